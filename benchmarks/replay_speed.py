"""Wall time of ``bandit-router replay --lam 1`` against the reference replay, side by side.

Runs, in turns (the first of each round rotates), ``bandit-router replay --lam 1`` (the router
path: every prompt through a real ``BanditRouterRunnable``) and
``../shared/tools/reference_replay.py routerbench --lam 1`` (plain numpy loops of five
policies), each in its own process, and prints the median over rounds of each round's ratio
to the reference. ``--baseline DIR`` adds the replay of another checkout of the package (say,
an older commit unpacked with ``git archive <commit> | tar -x -C DIR``), run with
``PYTHONPATH=DIR``, to compare two versions in the same run. Usage::

    python benchmarks/replay_speed.py [--rounds 5] [--baseline DIR] [--reference PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT.parent / "shared" / "tools" / "reference_replay.py"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--baseline", type=Path, help="another checkout of the package to time")
    ap.add_argument("--reference", type=Path, default=REFERENCE)
    ns = ap.parse_args(argv)
    if not ns.reference.exists():
        print(f"no reference replay at {ns.reference}", file=sys.stderr)
        return 2
    replay = [sys.executable, "-m", "bandit_router.cli", "replay", "--lam", "1"]
    runs: dict[str, tuple[list[str], dict[str, str], Path]] = {
        "bandit-router replay --lam 1": (replay, {}, ROOT),
        "reference_replay.py routerbench --lam 1": (
            [sys.executable, str(ns.reference), "routerbench", "--lam", "1"],
            {},
            ns.reference.parent,
        ),
    }
    if ns.baseline is not None:
        base = ns.baseline.resolve()
        # Run from the baseline's parent so that this checkout is not on the path.
        runs[f"baseline ({base.name})"] = (replay, {"PYTHONPATH": str(base)}, base.parent)
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(ns.rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            cmd, extra, cwd = runs[name]
            env = {**os.environ, **extra}
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
            times[name].append(time.perf_counter() - t0)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{ns.rounds} interleaved rounds; load average {load:.2f} at the end")
    print()
    print("| run | median wall time (s) | ratio to the reference (median of the rounds) |")
    print("|---|---:|---:|")
    ref = times["reference_replay.py routerbench --lam 1"]
    for name, ts in times.items():
        ratio = statistics.median(a / b for a, b in zip(ts, ref, strict=True))
        print(f"| {name} | {statistics.median(ts):.1f} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

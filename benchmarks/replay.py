"""Replay of real LLM outcomes (RouterBench, FrugalGPT): the acceptance figures of the replay issue.

Every run goes through the real ``BanditRouterRunnable`` (arms are ``ReplayArm`` chat models
answering with the logged outcomes) unless ``--engine`` is given, which drives the ``Bandit``
engine under it instead (the same policies, statistics and store, without LangChain; the
choices are identical, see tests/replay/test_run.py). Orders: ``numpy.random.default_rng(seed)
.permutation(n)`` for seeds 0..9, as ``../shared/tools/reference_replay.py`` does; the figure is
the policy's mean reward over the best fixed arm's, in hindsight, averaged over the seeds.

Usage::

    python benchmarks/replay.py                  # everything, through the router (~15-30 min)
    python benchmarks/replay.py --engine         # the same through the engine (~3 min)
    python benchmarks/replay.py --only policies,prices --seeds 3
    python benchmarks/replay.py derive ../shared/data/routerbench   # rebuild the embedded table

Sections: policies, prices (with contexts), warm, blocked, frugalgpt. ``--plots docs`` writes
the PNGs of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from bandit_router.replay import (
    OutcomeTable,
    ReplayReport,
    load_dataset,
    plot_curves,
    plot_report,
    read_routerbench,
    replay,
    write_outcomes,
)
from bandit_router.replay._table import ROUTERBENCH_SOURCE

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
EMBEDDED = ROOT / "bandit_router" / "replay" / "data" / "routerbench.csv.gz"
SECTIONS = ("policies", "prices", "warm", "blocked", "frugalgpt")
POLICIES = ("klucb", "klucb-bernoulli", "klucb-log", "ucb-tuned", "ucb1", "thompson")

DERIVED_NOTE = (
    "Derived for bandit-router: per-prompt scores (0/1) and costs (USD, '<model>|total_cost') of "
    "the 11 models; prompt and answer texts removed; the 28 prompts lacking a model's score "
    "dropped (3,150 kept, in the files' sorted order: arc_challenge_test, arc_challenge_train, "
    "mbpp_test, mbpp_train, winograde_test, winograde_train); task = eval_name, prompt_id = "
    "sample_id.\n"
    "License: no LICENSE file in RouterDC; the upstream dataset's license was not verifiable "
    "when this table was derived: check before redistributing it.\n"
    "Regenerate: python benchmarks/replay.py derive ../shared/data/routerbench"
)


def derive(src: Path, out: Path = EMBEDDED) -> None:
    """Rebuild the embedded RouterBench table (scores and costs only) from RouterDC's CSVs."""
    table = read_routerbench(src)
    table = dataclasses.replace(table, source=ROUTERBENCH_SOURCE + "\n" + DERIVED_NOTE)
    write_outcomes(table, out)
    print(f"{out}: {len(table)} prompts x {len(table.models)} models ({table.dropped} dropped)")


class Bench:
    def __init__(self, seeds: int, path: str, plots: Path | None) -> None:
        self.seeds = seeds
        self.path: Literal["router", "engine"] = "engine" if path == "engine" else "router"
        self.plots = plots
        self.rows: list[tuple[str, str, float, float, float, float]] = []

    def run(
        self, title: str, table: OutcomeTable, policy: str = "klucb", **kw: Any
    ) -> ReplayReport:
        t0 = time.perf_counter()
        report = replay(table, [policy], seeds=kw.pop("seeds", self.seeds), path=self.path, **kw)
        line = report.lines(baselines=False)[0]
        self.rows.append(
            (
                title,
                line.label,
                line.pct_best,
                line.pct_best_std,
                line.regret,
                line.total_cost,
            )
        )
        print(
            f"| {title} | {line.label} | **{line.pct_best:.2f}** +- {line.pct_best_std:.2f} "
            f"| {line.pct_oracle:.2f} | {line.regret:.1f} | {line.total_cost:.2f} "
            f"| {line.cost_vs_top:.1f} | {time.perf_counter() - t0:.0f} s |",
            flush=True,
        )
        return report


HEADER = (
    "| setting | policy | % of best fixed arm (+- std) | % of oracle | regret | cost $ "
    "| % cost of top model | time |\n|---|---|---:|---:|---:|---:|---:|---:|"
)


def baselines(report: ReplayReport) -> None:
    print(f"\nbaselines ({report.table.name}, lam={report.lam:g}, {report.order}):")
    for line in report.lines()[len(report.runs) :]:
        print(
            f"| {line.label} | {line.mean_reward:.4f} | {line.pct_best:.2f} | {line.pct_oracle:.2f}"
            f" | {line.mean_score:.3f} | {line.total_cost:.2f} | {line.cost_vs_top:.1f} |"
        )
    print(HEADER)


def merged(reports: list[ReplayReport], labels: list[str]) -> ReplayReport:
    """One report holding several runs made over the same orders (for one plot)."""
    runs = [
        dataclasses.replace(r.runs[0], label=lab) for r, lab in zip(reports, labels, strict=True)
    ]
    return dataclasses.replace(reports[0], runs=runs)


def section_policies(b: Bench, rb: OutcomeTable) -> None:
    for lam in (0.0, 1.0):
        reports = [b.run(f"RouterBench, lam={lam:g}", rb, p, lam=lam) for p in POLICIES]
        if lam == 1.0 and b.plots:
            plot_report(
                merged(reports, [r.runs[0].label for r in reports]),
                b.plots / "replay_routerbench_lam1.png",
            )
        if lam == 0.0:
            baselines(reports[0])


def section_prices(b: Bench, rb: OutcomeTable) -> None:
    plain = b.run("RouterBench, lam=1, reward learned", rb, lam=1.0)
    priced = b.run("RouterBench, lam=1, prices known", rb, lam=1.0, prices=True)
    b.run("RouterBench, lam=1, prices known", rb, "thompson", lam=1.0, prices=True)
    ctx = b.run("RouterBench, lam=1, prices + context=task", rb, lam=1.0, prices=True, context=True)
    seeded = [
        b.run(
            f"RouterBench, lam=1, prices + context=task, context_prior_weight={w}",
            rb,
            lam=1.0,
            prices=True,
            context=True,
            context_prior_weight=w,
        )
        for w in (5.0, 10.0, 20.0)
    ]
    b.run("RouterBench, lam=1, context=task (reward learned)", rb, lam=1.0, context=True)
    b.run(
        "RouterBench, lam=1, context=task, context_prior_weight=10 (reward learned)",
        rb,
        lam=1.0,
        context=True,
        context_prior_weight=10.0,
    )
    baselines(priced)
    if b.plots:
        plot_report(
            merged(
                [plain, priced, ctx, seeded[1]],
                [
                    "kl-ucb (reward learned)",
                    "kl-ucb, prices known",
                    "kl-ucb, prices known, context=task",
                    "kl-ucb, prices known, context=task, seeded (10)",
                ],
            ),
            b.plots / "replay_routerbench_prices.png",
            title="RouterBench, lambda = 1: cost known, quality learned (10 shuffled orders)",
        )


def section_warm(b: Bench, rb: OutcomeTable) -> None:
    """Priors learned on one half of the prompts, then a router on the other half."""
    perm = np.random.default_rng(1000).permutation(len(rb)).tolist()
    half = len(rb) // 2
    earlier, later = (
        rb.subset(perm[:half], "routerbench-A"),
        rb.subset(perm[half:], "routerbench-B"),
    )
    for lam in (1.0,):
        first = b.run(f"warm start: replay on half A (lam={lam:g})", earlier, lam=lam)
        cold = b.run(f"warm start: half B, cold (lam={lam:g})", later, lam=lam)
        curves = {"cold start": cold.ratio_curve()}
        for w in (20.0, 100.0, None):
            priors = first.priors(max_weight=w)
            warm = b.run(
                f"warm start: half B, priors from A capped at {w or 'all'} (lam={lam:g})",
                later,
                lam=lam,
                priors=priors,
            )
            curves[f"priors from A, weight <= {w:g}" if w else "priors from A, full weight"] = (
                warm.ratio_curve()
            )
        for label, curve in curves.items():
            reach = next((i + 1 for i in range(len(curve)) if min(curve[i:]) >= 0.98), None)
            print(
                f"  {label}: {curve[99]:.3f} at 100, {curve[499]:.3f} at 500, final "
                f"{curve[-1]:.4f}; stays >= 0.98 from prompt {reach}"
            )
        if b.plots:
            plot_curves(
                curves,
                b.plots / "replay_warm_start.png",
                title=f"RouterBench half B, lambda = {lam:g}: cold vs warm start "
                f"({b.seeds} orders)",
                ylabel="reward so far / best fixed arm's",
                hline=0.98,
                ylim=(0.8, 1.05),
            )


def section_blocked(b: Bench, rb: OutcomeTable) -> None:
    for lam in (0.0, 1.0):
        tag = f"RouterBench blocked (ARC, MBPP, Winogrande), lam={lam:g}"
        r = b.run(f"{tag}, stationary", rb, lam=lam, order="blocked")
        for d in (0.999, 0.9995):
            b.run(f"{tag}, decay={d}", rb, lam=lam, order="blocked", decay=d)
        b.run(f"{tag}, context=task", rb, lam=lam, order="blocked", context=True)
        b.run(
            f"{tag}, context=task, context_prior_weight=10",
            rb,
            lam=lam,
            order="blocked",
            context=True,
            context_prior_weight=10.0,
        )
        if lam == 1.0:
            b.run(f"{tag}, prices known", rb, lam=lam, order="blocked", prices=True)
            b.run(
                f"{tag}, prices known, context=task, context_prior_weight=10",
                rb,
                lam=lam,
                order="blocked",
                prices=True,
                context=True,
                context_prior_weight=10.0,
            )
            baselines(r)
            per_task = _per_task_best(rb, lam)
            print(f"  per-task best arms / best single arm, lam={lam:g}: {per_task:.4f}")


def _per_task_best(table: OutcomeTable, lam: float) -> float:
    r = table.rewards(lam)
    k = len(table.models)
    best_single = max(sum(row[j] for row in r) for j in range(k))
    total = 0.0
    for task in table.task_names():
        rows = [i for i, t in enumerate(table.tasks) if t == task]
        total += max(sum(r[i][j] for i in rows) for j in range(k))
    return total / best_single


def section_frugalgpt(b: Bench) -> None:
    path = SHARED / "frugalgpt_overruling" / "overruling.csv"
    if not path.exists():
        print(f"skipped: no {path}")
        return
    fg = load_dataset(path)
    for lam in (0.0, 1.0):
        reports = [b.run(f"FrugalGPT OVERRULING, lam={lam:g}", fg, p, lam=lam) for p in POLICIES]
        if lam == 1.0:
            baselines(reports[0])
    b.run("FrugalGPT OVERRULING, lam=1, prices known", fg, lam=1.0, prices=True)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "derive":
        derive(Path(sys.argv[2]) if len(sys.argv) > 2 else SHARED / "routerbench")
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--engine", action="store_true", help="through the Bandit engine")
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"some of {','.join(SECTIONS)}")
    ap.add_argument("--plots", type=Path, default=None, help="write the PNGs to this folder")
    a = ap.parse_args()
    b = Bench(a.seeds, "engine" if a.engine else "router", a.plots)
    rb = load_dataset("routerbench")
    only = a.only.split(",")
    print(f"through the {b.path}, {a.seeds} seeds\n\n{HEADER}")
    t0 = time.perf_counter()
    if "policies" in only:
        section_policies(b, rb)
    if "prices" in only:
        section_prices(b, rb)
    if "warm" in only:
        section_warm(b, rb)
    if "blocked" in only:
        section_blocked(b, rb)
    if "frugalgpt" in only:
        section_frugalgpt(b)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()

"""The ``bandit-router`` command line: help, errors (exit status 2), a small replay, plots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bandit_router import cli
from bandit_router.replay import write_outcomes

from ._tables import ROOT_DIR, TINY_CSV, bernoulli


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = cli.main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def tiny_csv(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.csv"
    path.write_text(TINY_CSV)
    return path


@pytest.fixture
def bern_csv(tmp_path: Path) -> Path:
    path = tmp_path / "bern.csv.gz"
    write_outcomes(bernoulli(300), path)
    return path


def test_console_script_is_declared() -> None:
    with (ROOT_DIR / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    assert project["scripts"]["bandit-router"] == "bandit_router.cli:main"
    assert "matplotlib>=3.8" in project["optional-dependencies"]["plot"]
    assert any(d.startswith("matplotlib") for d in project["optional-dependencies"]["dev"])


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["replay", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for text in (
        "--dataset NAME|PATH",
        "--policy",
        "--lam",
        "--seeds",
        "--order",
        "--context",
        "--prices",
        "--plot",
        "routerbench",
        "prompt_id,model,score",
        "exit status",
    ):
        assert text in out
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    assert "replay" in capsys.readouterr().out


def test_commands_are_a_list_of_registrations() -> None:
    assert "replay" in dict(cli._COMMANDS)
    parser = cli.build_parser()
    args = parser.parse_args(["replay", "--lam", "0.5", "--policy", "klucb,ucb1"])
    assert args.func is cli.replay_command
    assert args.policy == [["klucb", "ucb1"]]


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["replay", "--lam", "-1"],
        ["replay", "--seeds", "0"],
        ["replay", "--policy", "greedy"],
        ["replay", "--decay", "1.5"],
        ["replay", "--order", "random"],
    ],
)
def test_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "error" in capsys.readouterr().err


def test_missing_dataset_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    missing = tmp_path / "nothere.csv"
    status, out, err = run(capsys, "replay", "--dataset", str(missing))
    assert status == 2
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"bandit-router replay: error: {missing}: no such file")


def test_malformed_dataset_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt_id,model,score\nq1,a,1\nq1,b,maybe\n")
    status, out, err = run(capsys, "replay", "--dataset", str(bad))
    assert status == 2
    assert out == ""
    assert err == (
        f"bandit-router replay: error: {bad}: line 3: column 'score' is not a number: 'maybe'\n"
    )


def test_small_replay(capsys: pytest.CaptureFixture[str], bern_csv: Path) -> None:
    status, out, err = run(
        capsys, "replay", "--dataset", str(bern_csv), "--seeds", "2", "--lam", "1",
        "--policy", "klucb", "--policy", "thompson", "--no-progress",
    )  # fmt: skip
    assert status == 0, err
    assert err == ""
    lines = out.splitlines()
    assert lines[0] == "bern: 300 prompts x 3 models"
    assert "BanditRouterRunnable (LangChain)" in out
    for label in (
        "kl-ucb ",
        "thompson ",
        "best fixed arm: mid",
        "always big (top quality)",
        "uniform random (expected)",
        "round-robin",
        "oracle (best arm per prompt)",
    ):
        assert any(line.startswith(label) for line in lines), label
    header = next(line for line in lines if "% best" in line)
    for col in ("reward", "% best", "% oracle", "cost $", "% cost", "regret"):
        assert col in header


def test_progress_bar_goes_to_stderr(capsys: pytest.CaptureFixture[str], tiny_csv: Path) -> None:
    status, out, err = run(
        capsys, "replay", "--dataset", str(tiny_csv), "--order", "table", "--seeds", "1",
        "--engine", "--progress",
    )  # fmt: skip
    assert status == 0
    assert "100% 4/4" in err
    assert err.endswith("\n")
    assert "through: Bandit engine" in out


def test_options_reach_the_replay(capsys: pytest.CaptureFixture[str], bern_csv: Path) -> None:
    status, out, _ = run(
        capsys, "replay", "--dataset", str(bern_csv), "--seeds", "1", "--lam", "1", "--prices",
        "--context", "task", "--context-prior-weight", "5", "--decay", "0.999", "--limit", "50",
        "--order", "blocked", "--engine", "--no-progress",
    )  # fmt: skip
    assert status == 0
    assert "bern: 50 prompts" in out
    assert "kl-ucb +prices +context decay=0.999" in out
    assert "the cost is known to the router" in out
    assert "context: task (seeded, weight 5); decay 0.999" in out
    assert "order: blocked, 1 seed" in out


def test_priors_round_trip(
    capsys: pytest.CaptureFixture[str], bern_csv: Path, tmp_path: Path
) -> None:
    priors = tmp_path / "priors.json"
    base = ["replay", "--dataset", str(bern_csv), "--seeds", "1", "--engine", "--no-progress"]
    status, out, _ = run(capsys, *base, "--save-priors", str(priors))
    assert status == 0
    assert f"priors written to {priors}" in out
    data = json.loads(priors.read_text())
    assert data["learned"] == "reward lam=0"
    assert set(data["arms"]) == {"big", "mid", "small"}
    status, out, _ = run(capsys, *base, "--priors", str(priors), "--prior-weight", "10")
    assert status == 0
    assert "kl-ucb +priors" in out
    assert "warm start (priors)" in out
    status, _, err = run(capsys, *base, "--priors", str(priors), "--lam", "1")
    assert status == 2
    assert "priors of the reward lam=0, but this replay learns the reward lam=1" in err
    priors.write_text("{")
    status, _, err = run(capsys, *base, "--priors", str(priors))
    assert status == 2
    assert err.startswith(f"bandit-router replay: error: {priors}: is not a priors JSON file")


def test_plot(capsys: pytest.CaptureFixture[str], tiny_csv: Path, tmp_path: Path) -> None:
    png = tmp_path / "out.png"
    status, out, err = run(
        capsys, "replay", "--dataset", str(tiny_csv), "--order", "table", "--seeds", "1",
        "--plot", str(png), "--no-progress",
    )  # fmt: skip
    assert status == 0, err
    assert f"plot written to {png}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_fails_first(
    capsys: pytest.CaptureFixture[str], tiny_csv: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "matplotlib" else real(name, *a),
    )
    status, out, err = run(
        capsys, "replay", "--dataset", str(tiny_csv), "--plot", "x.png", "--no-progress"
    )
    assert status == 2
    assert out == ""  # nothing was replayed
    assert err == (
        "bandit-router replay: error: --plot needs matplotlib, which is not installed: "
        "pip install 'bandit-router[plot]'\n"
    )


def test_runs_as_a_module_in_a_fresh_interpreter(tiny_csv: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bandit_router.cli", "replay", "--dataset", str(tiny_csv),
         "--order", "table", "--seeds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # stderr is not a terminal: no progress bar
    assert "tiny: 4 prompts x 2 models" in proc.stdout
    assert "data: a made-up table" in proc.stdout


def test_the_policies_own_names_are_accepted_too(capsys: pytest.CaptureFixture[str]) -> None:
    # "kl-ucb-bernoulli" is what spans and `bandit-router stats` call KLUCB(variance=False).
    code = cli.main(
        ["replay", "--limit", "60", "--seeds", "1", "--engine", "--policy", "kl-ucb-bernoulli"]
    )
    assert code == 0
    assert "kl-ucb-bernoulli" in capsys.readouterr().out

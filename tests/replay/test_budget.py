"""Replays under a budget: parsing, the hindsight figures, the engine path, report, CLI, plot."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bandit_router import cli
from bandit_router.replay import (
    ReplayBudget,
    budget_lines,
    format_budget_report,
    parse_budget,
    plot_budget,
    replay,
    write_outcomes,
)
from bandit_router.replay._budget import (
    describe_mixture,
    hindsight_best,
    hindsight_best_per_context,
    spend_curve,
    top_cost,
)

from ._tables import bernoulli, tiny


@pytest.mark.parametrize(
    ("text", "amount", "unit"),
    [
        ("0.1", 0.1, "fraction"),
        ("10%", 0.1, "fraction"),
        (" 25 % ", 0.25, "fraction"),
        ("0.0005usd", 0.0005, "usd"),
        ("0.0005 USD", 0.0005, "usd"),
        ("$0.0005", 0.0005, "usd"),
        ("1e-4usd", 1e-4, "usd"),
    ],
)
def test_parse_budget(text: str, amount: float, unit: str) -> None:
    b = parse_budget(text)
    assert b.amount == pytest.approx(amount)
    assert b.unit == unit


@pytest.mark.parametrize("text", ["", "ten", "-0.1", "nan", "inf", "0.1eur", "usd"])
def test_parse_budget_refuses_naming_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="budget"):
        parse_budget(text)


def test_replay_budget_validation_and_schedule() -> None:
    with pytest.raises(ValueError, match="finite number"):
        ReplayBudget(-1.0)
    with pytest.raises(ValueError, match="unit"):
        ReplayBudget(0.1, "eur")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="call"):
        ReplayBudget(0.1, changes=((-1, 0.5),))
    with pytest.raises(ValueError, match="factor"):
        ReplayBudget(0.1, changes=((1, math.nan),))
    with pytest.raises(ValueError, match="window"):
        ReplayBudget(0.1, window=0)
    t = tiny()  # top quality: "dear" (0.75), mean cost 0.0125
    assert top_cost(t) == pytest.approx(0.0125)
    b = ReplayBudget(0.5, changes=((2, 0.5),))
    assert b.usd(t) == pytest.approx(0.00625)
    assert b.schedule(t, 4) == pytest.approx([0.00625, 0.00625, 0.003125, 0.003125])
    assert ReplayBudget(0.003, "usd").usd(t) == 0.003
    assert "50% of dear's" in b.label(t)
    assert "x0.5 from call 2" in b.label(t)


def test_hindsight_figures_by_hand() -> None:
    t = tiny()
    # cheap: quality 0.5, mean cost 0.00125; dear: quality 0.75, mean cost 0.0125.
    rows = [0, 1, 2, 3]
    usd = 0.00125 + 0.5 * (0.0125 - 0.00125)  # halfway: half of each
    assert hindsight_best(t, rows, [usd] * 4) == pytest.approx(4 * 0.625)
    assert "cheap 50% + dear 50%" in describe_mixture(t, rows, usd)
    # Per task: math (q1, q2) gains 0.5 for 0.009 (dear is right on both), code gains 0 for
    # 0.0135 (dear right once, cheap once): the shared budget all goes to math.
    per_task = hindsight_best_per_context(t, rows, [usd] * 4)
    assert per_task == pytest.approx(4 * (0.5 * 1.0 + 0.5 * 0.5))
    assert per_task > hindsight_best(t, rows, [usd] * 4)
    # A budget below the cheapest model: the cheapest model.
    assert hindsight_best(t, rows, [0.0] * 4) == pytest.approx(2.0)


@pytest.fixture(scope="module")
def bern_report() -> object:
    return replay(bernoulli(600), seeds=2, path="engine", budget=ReplayBudget(0.2))


def test_engine_replay_keeps_the_budget(bern_report: object) -> None:
    from bandit_router.replay import ReplayReport

    assert isinstance(bern_report, ReplayReport)
    [line] = budget_lines(bern_report)
    assert line.pct_budget <= 101.0
    assert line.pct_budget_max <= 101.5
    assert line.pct_best_mixture >= 90.0
    assert line.follow == ()
    assert "budget=0.2" in line.label
    assert bern_report.learned[0] == list(bern_report.table.scores[0])  # the score is learned
    text = format_budget_report(bern_report)
    for part in ("budget: 20% of big's", "best fixed mixture in hindsight", "% best mix", "window"):
        assert part in text
    curve = spend_curve(bern_report)
    assert len(curve) == 600
    assert 0.8 <= curve[-1] <= 1.2


def test_budget_change_is_followed() -> None:
    report = replay(
        bernoulli(800), seeds=2, path="engine", budget=ReplayBudget(0.5, changes=((400, 0.4),))
    )
    [line] = budget_lines(report)
    assert len(line.follow) == 1
    assert line.follow[0] is not None
    assert line.follow[0] <= 150
    assert "follows after" in format_budget_report(report)


def test_budget_replay_refuses_lam_prices_and_the_router_path() -> None:
    t = bernoulli(50)
    with pytest.raises(ValueError, match="lam and prices"):
        replay(t, seeds=1, lam=1.0, path="engine", budget=ReplayBudget(0.2))
    with pytest.raises(ValueError, match="lam and prices"):
        replay(t, seeds=1, prices=True, path="engine", budget=ReplayBudget(0.2))
    with pytest.raises(RuntimeError, match="engine"):
        replay(t, seeds=1, path="router", budget=ReplayBudget(0.2))
    with pytest.raises(ValueError, match="no budget"):
        budget_lines(replay(t, seeds=1, path="engine"))


def test_budget_replay_with_contexts_and_decay() -> None:
    report = replay(
        bernoulli(600),
        seeds=1,
        path="engine",
        context=True,
        context_prior_weight=5.0,
        decay=0.999,
        budget=ReplayBudget(0.003, "usd"),
    )
    [line] = budget_lines(report)
    assert line.pct_budget <= 101.0
    assert "+context" in line.label


@pytest.fixture
def bern_csv(tmp_path: Path) -> Path:
    path = tmp_path / "bern.csv.gz"
    write_outcomes(bernoulli(300), path)
    return path


def test_cli_budget(capsys: pytest.CaptureFixture[str], bern_csv: Path, tmp_path: Path) -> None:
    png = tmp_path / "budget.png"
    argv = ["replay", "--dataset", str(bern_csv), "--seeds", "2", "--budget", "20%"]
    status = cli.main([*argv, "--budget-change", "150:0.5", "--plot", str(png)])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "budget: 20% of big's" in out
    assert "x0.5 from call 150" in out
    assert "through: Bandit engine" in out
    assert "engine" in err  # the note: budgets go through the engine
    assert png.stat().st_size > 10_000
    status = cli.main([*argv, "--engine", "--budget-window", "10"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "window 10 calls" in out
    assert err == ""


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--budget", "0.2", "--lam", "1"], "--lam and --prices do not apply"),
        (["--budget", "0.2", "--prices"], "--lam and --prices do not apply"),
        (["--budget-window", "5"], "need --budget"),
        (["--budget-change", "5:0.5"], "need --budget"),
    ],
)
def test_cli_budget_errors(
    capsys: pytest.CaptureFixture[str], bern_csv: Path, extra: list[str], message: str
) -> None:
    status = cli.main(["replay", "--dataset", str(bern_csv), "--seeds", "1", *extra])
    assert status == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra",
    [
        ["--budget", "lots"],
        ["--budget", "0.1", "--budget-change", "x"],
        ["--budget-change", "-1:2"],
    ],
)
def test_cli_budget_bad_arguments_exit_2(
    capsys: pytest.CaptureFixture[str], bern_csv: Path, extra: list[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["replay", "--dataset", str(bern_csv), *extra])
    assert info.value.code == 2
    assert "budget" in capsys.readouterr().err


def test_plot_budget_needs_a_budget(tmp_path: Path) -> None:
    report = replay(bernoulli(50), seeds=1, path="engine")
    with pytest.raises(ValueError, match="no budget"):
        plot_budget(report, tmp_path / "x.png")
    with pytest.raises(ValueError, match="no budget"):
        format_budget_report(report)

"""The ``bandit-router`` command line: ``bandit-router replay ...`` (and more subcommands).

Each subcommand is one entry of :data:`_COMMANDS`: a name and a ``register(subparsers)``
function that adds the subcommand's parser and sets its ``func(args) -> int`` (the exit
status). Adding a subcommand is one more line there.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

from bandit_router._cli_args import decay_arg, nonneg_float

if TYPE_CHECKING:
    from bandit_router.replay import ReplayBudget

__all__ = ["build_parser", "main"]

PROG = "bandit-router"

REPLAY_DESCRIPTION = """\
Replay logged outcomes of several LLMs through a real BanditRouterRunnable: how much would
routing have saved, at what quality?

For each seed the prompts are shuffled (numpy.random.default_rng(seed).permutation(n)); the
router picks a model per prompt, the model answers with its logged outcome, and the router
learns the reward

    r = score - lam * cost / cost_scale,   normalised as (r + lam) / (1 + lam)

where cost_scale is the largest mean cost of a model over the dataset. The table compares the
policies with the best fixed model in hindsight, uniform random, round-robin and the
per-prompt oracle, averaged over the seeds.

With --budget the router keeps an average spend per call instead: it learns the score only,
knows every model's expected cost, and maximises quality at that rate (bandit_router.budget);
the report compares it with the best fixed mixture of models in hindsight under the same
budget, and shows the spend.
"""

REPLAY_EPILOG = """\
datasets:
  routerbench     embedded: RouterBench 0-shot subset (Hu et al. 2024), 3,150 prompts x 11
                  models, scores and costs (the default)
  PATH            a CSV in the outcome format (columns prompt_id,model,score[,cost][,task];
                  .gz allowed), a RouterBench CSV or folder, or a FrugalGPT results CSV

examples:
  bandit-router replay --lam 1 --plot replay.png
  bandit-router replay --lam 1 --prices --context task
  bandit-router replay --policy klucb,thompson,ucb1 --seeds 3
  bandit-router replay --dataset my_outcomes.csv --lam 0.5 --save-priors priors.json
  bandit-router replay --budget 0.1 --plot budget.png     # 10% of the top model's cost
  bandit-router replay --budget 0.0005usd --context task  # $0.0005 per call, per-task learning
  bandit-router replay --budget 25% --budget-change 1500:0.5   # halved at call 1,500

budgets: FRACTION (0.1 or 10%) is a fraction of the mean cost per call of the model with the
  highest mean score; USD (0.0005usd or $0.0005) is an amount per call.

exit status: 0 done, 2 bad arguments or an unreadable dataset, priors file or plot setup.
"""

_POLICY_NAMES = (
    "klucb",
    "klucb-bernoulli",
    "klucb-log",
    "klucb-log-bernoulli",
    "ucb1",
    "ucb-tuned",
    "thompson",
)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {text}")
    return value


def _policies(text: str) -> list[str]:
    # The policies' own names ("kl-ucb", as spans and `bandit-router stats` show them) work too.
    names = [p.strip().replace("kl-ucb", "klucb") for p in text.split(",") if p.strip()]
    for p in names:
        if p not in _POLICY_NAMES:
            raise argparse.ArgumentTypeError(
                f"unknown policy {p!r}; choose from {', '.join(_POLICY_NAMES)}"
            )
    if not names:
        raise argparse.ArgumentTypeError("no policy given")
    return names


def _budget_arg(text: str) -> ReplayBudget:
    from bandit_router.replay import parse_budget

    try:
        return parse_budget(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _budget_change(text: str) -> tuple[int, float]:
    call, sep, factor = text.partition(":")
    try:
        if not sep:
            raise ValueError
        c, f = int(call), nonneg_float(factor)
    except (ValueError, argparse.ArgumentTypeError):
        raise argparse.ArgumentTypeError(
            f"not a budget change: {text!r} (CALL:FACTOR, e.g. 1500:0.5)"
        ) from None
    if c < 0:
        raise argparse.ArgumentTypeError(f"a budget change's call must be >= 0, got {text!r}")
    return c, f


def _register_replay(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "replay",
        help="replay logged LLM outcomes (RouterBench by default) through the router",
        description=REPLAY_DESCRIPTION,
        epilog=REPLAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--dataset",
        default="routerbench",
        metavar="NAME|PATH",
        help="an embedded dataset (routerbench, the default) or a file/folder (see below)",
    )
    p.add_argument(
        "--policy",
        type=_policies,
        action="append",
        metavar="P[,P...]",
        help=f"policies to replay, comma-separated or repeated: {', '.join(_POLICY_NAMES)} "
        "(default: klucb, the router's default)",
    )
    p.add_argument(
        "--lam",
        type=nonneg_float,
        default=0.0,
        help="weight of cost in the reward (default 0: quality only)",
    )
    p.add_argument(
        "--seeds", type=_positive_int, default=10, help="orders to replay, 0..N-1 (default 10)"
    )
    p.add_argument(
        "--order",
        choices=("shuffled", "blocked", "table"),
        default="shuffled",
        help="shuffled (default); blocked: grouped by task, shuffled within; table: file order",
    )
    p.add_argument(
        "--context",
        choices=("none", "task"),
        default="none",
        help="task: separate statistics per task (the router's context_key)",
    )
    p.add_argument(
        "--context-prior-weight",
        type=nonneg_float,
        default=None,
        metavar="W",
        help="with --context task: seed each task from the global statistics, worth at most "
        "W observations (the router's context_prior_weight)",
    )
    p.add_argument(
        "--prices",
        action="store_true",
        help="the arms' costs are known (their mean cost per call): the router learns the "
        "score only and subtracts lam * cost / cost_scale from each arm's index",
    )
    p.add_argument(
        "--budget",
        type=_budget_arg,
        default=None,
        metavar="FRACTION|USD",
        help="keep this average spend per call: a fraction of the top-quality model's mean "
        "cost per call (0.1, 10%%) or USD (0.0005usd); the router learns the score only",
    )
    p.add_argument(
        "--budget-window",
        type=_positive_int,
        default=None,
        metavar="N",
        help="with --budget: the budget's window in calls (how quickly overspending is made "
        "up; default 50)",
    )
    p.add_argument(
        "--budget-change",
        type=_budget_change,
        action="append",
        default=None,
        metavar="CALL:FACTOR",
        help="with --budget: from call CALL (0-based) on, the budget is FACTOR times the "
        "initial one (repeatable), e.g. 1500:0.5",
    )
    p.add_argument(
        "--decay", type=decay_arg, default=None, help="the router's decay (default: none)"
    )
    p.add_argument(
        "--limit", type=_positive_int, default=None, help="only the first N prompts of each order"
    )
    p.add_argument(
        "--engine",
        action="store_true",
        help="drive the Bandit engine directly (same policies and store, without LangChain; "
        "about 5x faster) instead of the BanditRouterRunnable",
    )
    p.add_argument(
        "--priors", metavar="FILE", help="start from priors saved by --save-priors (warm start)"
    )
    p.add_argument(
        "--prior-weight",
        type=nonneg_float,
        default=None,
        metavar="W",
        help="cap each prior from --priors at W observations",
    )
    p.add_argument(
        "--save-priors",
        metavar="FILE",
        help="write what the first policy learned as priors (JSON) for a later router",
    )
    p.add_argument("--plot", metavar="OUT.png", help="write a PNG of regret and arm allocation")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="draw a progress bar on stderr (default: when stderr is a terminal)",
    )
    p.set_defaults(func=replay_command)
    return p


def replay_command(args: argparse.Namespace) -> int:
    """Run ``bandit-router replay`` with parsed arguments; return the exit status."""
    from bandit_router.replay import (
        DatasetError,
        PlotUnavailableError,
        ProgressBar,
        areplay,
        format_budget_report,
        format_report,
        load_dataset,
        load_priors,
        plot_budget,
        plot_report,
        save_priors,
    )
    from bandit_router.replay._plot import check_plotting

    def fail(message: str) -> int:
        print(f"{PROG} replay: error: {message}", file=sys.stderr)
        return 2

    policies = [p for group in (args.policy or [["klucb"]]) for p in group]
    budget = args.budget
    if budget is None and (args.budget_window is not None or args.budget_change):
        return fail("--budget-window and --budget-change need --budget")
    if budget is not None:
        if args.lam or args.prices:
            return fail(
                "--budget learns the score only, with every model's cost known: --lam and "
                "--prices do not apply"
            )
        budget = dataclasses.replace(
            budget,
            window=args.budget_window or budget.window,
            changes=tuple(args.budget_change or ()),
        )
    learns_quality = args.prices or budget is not None
    path: Literal["router", "engine"] = "engine" if args.engine else "router"
    if budget is not None and path == "router":
        print(
            f"{PROG} replay: note: budgets replay through the Bandit engine (the router "
            "takes no budget= yet)",
            file=sys.stderr,
        )
        path = "engine"
    try:
        if args.plot:
            check_plotting()
        table = load_dataset(args.dataset)
        priors = None
        if args.priors:
            priors, learned = load_priors(args.priors)
            expected = "quality" if learns_quality else f"reward lam={args.lam:g}"
            if learned and learned != expected:
                return fail(
                    f"{args.priors}: priors of the {learned}, but this replay learns the {expected}"
                )
            unknown = sorted(set(priors) - set(table.models))
            if unknown:
                return fail(f"{args.priors}: priors for models not in the dataset: {unknown}")
            if args.prior_weight is not None:
                from bandit_router import Prior

                priors = {
                    a: Prior(p.mean, min(p.weight, args.prior_weight)) for a, p in priors.items()
                }
    except (DatasetError, PlotUnavailableError) as exc:
        return fail(str(exc))

    show = sys.stderr.isatty() if args.progress is None else args.progress
    bar = ProgressBar(f"replay {table.name}") if show else None
    try:
        report = asyncio.run(
            areplay(
                table,
                policies,
                lam=args.lam,
                seeds=args.seeds,
                order=args.order,
                limit=args.limit,
                prices=args.prices,
                context=args.context == "task",
                context_prior_weight=args.context_prior_weight,
                decay=args.decay,
                priors=priors,
                path=path,
                progress=bar,
                budget=budget,
            )
        )
    except (ValueError, RuntimeError) as exc:
        return fail(str(exc))
    finally:
        if bar is not None:
            bar.close()
    print(format_report(report) if budget is None else format_budget_report(report))
    if args.save_priors:
        learned = "quality" if learns_quality else f"reward lam={args.lam:g}"
        try:
            save_priors(args.save_priors, report.priors(), learned=learned, dataset=table.name)
        except OSError as exc:
            return fail(f"{args.save_priors}: cannot write ({exc.strerror or exc})")
        print(f"priors written to {args.save_priors}")
    if args.plot:
        try:
            if budget is None:
                plot_report(report, args.plot)
            else:
                plot_budget(report, args.plot)
        except OSError as exc:
            return fail(f"{args.plot}: cannot write ({exc.strerror or exc})")
        print(f"plot written to {args.plot}")
    return 0


def _register_stats(subparsers: Any) -> argparse.ArgumentParser:
    # Imported here, like each subcommand's code: `bandit-router --help` stays fast.
    from bandit_router._cli_stats import register

    return register(subparsers)


#: The subcommands, in help order: ``(name, register)``; ``register(subparsers)`` adds the
#: subcommand's parser (via ``subparsers.add_parser(name, ...)``) and sets its
#: ``func(args) -> int``.
_COMMANDS: list[tuple[str, Callable[[Any], object]]] = [
    ("replay", _register_replay),
    ("stats", _register_stats),
]


def build_parser() -> argparse.ArgumentParser:
    """Return the ``bandit-router`` parser with every subcommand of :data:`_COMMANDS`."""
    from bandit_router._version import __version__

    parser = argparse.ArgumentParser(
        prog=PROG, description="bandit-router: a learning LLM router for LangChain."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for _name, register in _COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    status: int = args.func(args)
    return status


if __name__ == "__main__":
    sys.exit(main())

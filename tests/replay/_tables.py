"""Small outcome tables for the replay tests."""

from __future__ import annotations

from pathlib import Path

from bandit_router.replay import OutcomeTable

ROOT_DIR = Path(__file__).resolve().parents[2]
SHARED = ROOT_DIR.parent / "shared" / "data"

TINY_CSV = """\
# a made-up table
# second comment line
prompt_id,model,score,cost,task
q1,cheap,1,0.001,math
q1,dear,1,0.010,math
q2,cheap,0,0.001,math
q2,dear,1,0.010,math
q3,cheap,1,0.002,code
q3,dear,0,0.020,code
q4,cheap,0,0.001,code
q4,dear,1,0.010,code
"""


def tiny() -> OutcomeTable:
    """Two models, four prompts, two tasks: every figure can be worked out by hand."""
    return OutcomeTable(
        name="tiny",
        models=("cheap", "dear"),
        prompt_ids=("q1", "q2", "q3", "q4"),
        tasks=("math", "math", "code", "code"),
        scores=((1.0, 1.0), (0.0, 1.0), (1.0, 0.0), (0.0, 1.0)),
        costs=((0.001, 0.010), (0.001, 0.010), (0.002, 0.020), (0.001, 0.010)),
    )


def bernoulli(n: int = 400, seed: int = 0) -> OutcomeTable:
    """Three models of known quality (0.9, 0.7, 0.5) and cost, ``n`` prompts, two tasks."""
    import random

    rng = random.Random(seed)
    quality = (0.9, 0.7, 0.5)
    price = (0.01, 0.002, 0.001)
    return OutcomeTable(
        name="bernoulli",
        models=("big", "mid", "small"),
        prompt_ids=tuple(f"p{i}" for i in range(n)),
        tasks=tuple("a" if i % 2 else "b" for i in range(n)),
        scores=tuple(tuple(1.0 if rng.random() < q else 0.0 for q in quality) for _ in range(n)),
        costs=tuple(price for _ in range(n)),
    )

"""LangSmith and openevals evaluators as the router's reward, with feedback sent to LangSmith.

Two fake chat models (no API needed) answer arithmetic questions; the reference answers are
a small dataset. The router's reward is an evaluator written for ``langsmith.evaluate()``,
used unchanged through ``bandit_router_langsmith.langsmith_reward``:

* openevals' ``exact_match`` when openevals is installed (``make`` installs it);
* otherwise an ``(outputs, reference_outputs)`` function in LangSmith's style.

Every evaluator result is also forwarded as LangSmith feedback on the router's run id, and so
is a user's delayed thumbs-up (``LangSmithFeedback.arecord``). Offline (the default) the
feedback goes to ``RecordingClient``, a real ``langsmith.Client`` whose HTTP layer records
instead of sending. With ``--langsmith`` it goes to LangSmith (set ``LANGSMITH_API_KEY``,
and ``LANGSMITH_TRACING=true`` to see the routed calls there too). See docs/langsmith.md.

Run:  python examples/langsmith_evaluator.py [--calls 200] [--langsmith]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import uuid
from collections.abc import Callable
from typing import Any

import langsmith
from bandit_router_langsmith import LangSmithFeedback, langsmith_reward
from bandit_router_langsmith.testing import RecordingClient
from langchain_core.messages import AIMessage
from langchain_core.runnables import Runnable, RunnableLambda

from bandit_router import BanditRouterRunnable

DATASET = {f"What is {a} + {b}?": str(a + b) for a in range(2, 9) for b in range(3, 8)}


def calculator(accuracy: float, seed: int) -> Runnable[str, AIMessage]:
    """A fake model: answers a dataset question, right with probability ``accuracy``."""
    rng = random.Random(seed)

    def answer(question: str) -> AIMessage:
        right = DATASET[question]
        return AIMessage(right if rng.random() < accuracy else str(int(right) + 1))

    return RunnableLambda(answer)


def same_answer(outputs: dict[str, Any], reference_outputs: dict[str, Any]) -> bool:
    """An evaluator in LangSmith's style: the dicts LangSmith gives, a bool back."""
    return bool(outputs["output"].strip() == reference_outputs["output"])


def pick_evaluator() -> tuple[Callable[..., Any], str]:
    try:
        from openevals import exact_match
    except ImportError:
        return same_answer, "same_answer (LangSmith style; pip install openevals for exact_match)"
    return exact_match, "openevals exact_match"


async def main(calls: int, online: bool) -> None:
    client = langsmith.Client() if online else RecordingClient(projects={"default": uuid.uuid4()})
    feedback = LangSmithFeedback(client)
    evaluator, label = pick_evaluator()
    router = BanditRouterRunnable(
        arms={"guesser": calculator(0.55, seed=1), "solver": calculator(0.95, seed=2)},
        # The reference for each call is looked up from its input: the question.
        reward=langsmith_reward(evaluator, reference=DATASET.get, feedback=feedback),
        seed=0,
    )
    questions = list(DATASET)
    for i in range(calls):
        await router.ainvoke(questions[i % len(questions)])
    # A router without reward= waits for its users' ratings instead: one arrives later and
    # is recorded in the router and sent to LangSmith in one call.
    delayed = BanditRouterRunnable(arms=router.arms, name="rated_by_users", seed=0)
    rated = uuid.uuid4()
    await delayed.ainvoke(questions[0], config={"run_id": rated})
    await feedback.arecord(delayed, rated, 1.0, key="thumbs_up")
    await feedback.aflush(30)

    stats = await router.astatistics()
    print(f"evaluator: {label}")
    for arm, s in stats.items():
        print(f"  {arm:8s} pulls {s.pulls:4d}  mean reward {s.mean or 0:.2f}")
    best = max(stats, key=lambda a: stats[a].pulls)
    print(f"The router prefers {best!r}.")
    where = "LangSmith" if online else "the recording client (offline)"
    print(f"{feedback.sent} feedback records sent to {where}, {feedback.failed} failed.")
    if isinstance(client, RecordingClient):
        keys = sorted({f["key"] for f in client.feedback})
        print(f"feedback keys: {keys}")
    feedback.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="routed calls")
    parser.add_argument("--langsmith", action="store_true", help="send feedback to LangSmith")
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.langsmith))

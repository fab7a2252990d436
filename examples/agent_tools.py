"""An agent whose model is a ChatBanditRouter: it learns which model calls its tool right.

A LangChain ``create_agent`` agent with one tool, ``multiply``. Its model is a
``ChatBanditRouter`` over three scripted models (offline fakes, no API key) that call the tool
with the right arguments 95%, 80% and 50% of the time. After each task the agent's answer is
checked and the verdict goes back to the router as delayed feedback for the model call that
produced it (its decision id is in the message's metadata). Over the tasks the router learns to
send the agent's calls to the careful model.

Run: ``python examples/agent_tools.py [--tasks 300]``
"""

from __future__ import annotations

import argparse
import random
from collections import Counter

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from bandit_router import ChatBanditRouter
from bandit_router.testing import ScriptedArm

ACCURACY = {"careful-model": 0.95, "sloppy-model": 0.8, "hasty-model": 0.5}


# return_direct: the tool's result is the agent's answer, so each task is one model call and
# its verdict belongs to that call alone.
@tool(return_direct=True)
def multiply(a: int, b: int) -> int:
    """Multiply two integers."""
    return a * b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=300)
    args = parser.parse_args()

    arms = {
        name: ScriptedArm(model=name, tool_accuracy=accuracy, seed=i)
        for i, (name, accuracy) in enumerate(ACCURACY.items())
    }
    router = ChatBanditRouter(arms=arms, seed=0)  # no reward=: it waits for feedback
    agent = create_agent(router, tools=[multiply])

    rng = random.Random(0)
    served: list[str] = []
    for _ in range(args.tasks):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        state = agent.invoke({"messages": [HumanMessage(f"What is {a} times {b}?")]})
        answer = state["messages"][-1]
        correct = isinstance(answer, ToolMessage) and answer.content == str(a * b)
        for message in state["messages"]:
            if isinstance(message, AIMessage) and "bandit_router" in message.response_metadata:
                decision = message.response_metadata["bandit_router"]
                router.record_feedback(decision["decision_id"], correct)
                served.append(decision["arm"])

    print(f"{'arm':<14} {'accuracy':>8} {'pulls':>6} {'mean':>6}")
    for name, s in router.statistics().items():
        print(f"{name:<14} {ACCURACY[name]:>8.2f} {s.pulls:>6} {s.mean:>6.3f}")
    last = Counter(served[-100:])
    best = max(ACCURACY, key=ACCURACY.__getitem__)
    share = last[best] / max(1, sum(last.values()))
    print(f"share of {best!r} in the last 100 tasks: {share:.0%}")
    favourite = last.most_common(1)[0][0]
    print(f"the agent's model prefers {favourite!r}")


if __name__ == "__main__":
    main()

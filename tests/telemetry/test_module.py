"""Arm descriptions, helper functions, the API-only rule and the console example."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.base import LangSmithParams
from langchain_core.language_models.fake import FakeListLLM
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from bandit_router.telemetry import ArmInfo, describe_arm, error_type, evaluator_name
from bandit_router.testing import FakeArm, FakeArmError

from ._otel import Otel

ROOT = Path(__file__).resolve().parents[2]


class VertexLike(FakeArm):
    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        return LangSmithParams(
            ls_provider="google_vertexai", ls_model_name="gemini-2.0-flash", ls_model_type="chat"
        )


class Exotic(FakeArm):
    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        raise RuntimeError("not today")


def _identity(x: LanguageModelInput) -> LanguageModelInput:
    return x


@pytest.mark.parametrize(
    ("arm", "info"),
    [
        (FakeArm(model="gpt-4o"), ArmInfo("fakearm", "gpt-4o", "chat")),
        (FakeArm(model="gpt-4o").bind_tools([_identity]), ArmInfo("fakearm", "gpt-4o", "chat")),
        (
            FakeArm(model="gpt-4o").bind(model="gpt-4o-2024-08-06"),
            ArmInfo("fakearm", "gpt-4o-2024-08-06", "chat"),
        ),
        (
            ChatPromptTemplate.from_messages([("human", "{q}")])
            | FakeArm(model="small")
            | StrOutputParser(),
            ArmInfo("fakearm", "small", "chat"),
        ),
        (VertexLike(), ArmInfo("gcp.vertex_ai", "gemini-2.0-flash", "chat")),
        (
            FakeListLLM(responses=["x"]),
            ArmInfo(describe_arm(FakeListLLM(responses=["x"])).provider, None, "text_completion"),
        ),
        (RunnableLambda(_identity), ArmInfo()),
        (Exotic(), ArmInfo()),
        (object(), ArmInfo()),
    ],
    ids=[
        "model",
        "bind_tools",
        "bound-model",
        "chain",
        "provider-mapped",
        "llm",
        "lambda",
        "raises",
        "object",
    ],
)
def test_describe_arm_finds_provider_and_model(arm: object, info: ArmInfo) -> None:
    assert describe_arm(arm) == info


def test_registered_arms_name_their_attempt_spans(otel: Otel) -> None:
    tel = otel.telemetry(arms={"v": VertexLike(), "fn": RunnableLambda(_identity)})
    assert tel.arm_info("v").provider == "gcp.vertex_ai"
    assert tel.arm_info("unknown") == ArmInfo()
    route = tel.start_route("r")
    route.attempt("v", 1).ok()
    route.attempt("fn", 1).ok()
    route.end()
    assert (otel.one("chat gemini-2.0-flash").attributes or {})[
        "gen_ai.provider.name"
    ] == "gcp.vertex_ai"
    assert otel.one("chat fn")


def test_error_type_and_evaluator_name() -> None:
    assert error_type(FakeArmError("x")) == "FakeArmError"
    assert error_type(TimeoutError()) == "TimeoutError"

    class Outer:
        class InnerError(Exception):
            pass

    assert error_type(Outer.InnerError()) == (
        "test_error_type_and_evaluator_name.<locals>.Outer.InnerError"
    )

    def is_right() -> None:
        pass

    class Judge:
        def __call__(self) -> float:
            return 1.0

    assert evaluator_name(is_right) == "is_right"
    assert evaluator_name(Judge()) == "Judge"


def test_the_module_imports_only_the_opentelemetry_api() -> None:
    tree = ast.parse((ROOT / "bandit_router" / "telemetry.py").read_text())
    imported = {
        alias.name if isinstance(node, ast.Import) else f"{node.module}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    otel = {name for name in imported if name.startswith("opentelemetry")}
    assert otel <= {
        "opentelemetry",
        "opentelemetry.trace",
        "opentelemetry.context",
        "opentelemetry.util.types",
    }, otel


def test_the_package_works_where_the_sdk_cannot_be_imported() -> None:
    # (langsmith imports the SDK when it is installed; here it cannot be.)
    code = (
        "import sys, importlib.abc\n"
        "class NoSDK(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.startswith('opentelemetry.sdk'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, NoSDK())\n"
        "from bandit_router.telemetry import Telemetry\n"
        "tel = Telemetry()\n"
        "route = tel.start_route('r', '', 'd')\n"
        "attempt = route.attempt('a', 1)\n"
        "with attempt.activate():\n"
        "    pass\n"
        "attempt.ok()\n"
        "route.reward(1.0)\n"
        "route.end()\n"
        "assert not route.recording\n"
        "assert not any(m.startswith('opentelemetry.sdk') for m in sys.modules)\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_the_console_example_prints_the_spans(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "tracing_console.py")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for needle in (
        '"name": "bandit_router.route"',
        '"name": "chat gpt-4o-mini"',
        '"name": "bandit_router.feedback"',
        '"gen_ai.evaluation.result"',
        '"bandit_router.indices"',
        "links to 1 route span",
    ):
        assert needle in out, needle
    assert "Failed to detach" not in proc.stderr

"""LangChain's standard chat-model tests (langchain-tests) against ChatBanditRouter.

The arms are scripted fakes (``bandit_router.testing.ScriptedArm``) that call tools, answer in
JSON and stream usage, so tool calling, tool choice, structured output and JSON mode all run
with the features ON. Skips that remain, and why:

* ``test_init_from_env``: the router reads nothing from the environment (no credentials).
* ``test_serdes``: not serialisable on purpose (``is_lc_serializable() is False``): a router
  holds live learning state (a store, pending decisions) that a JSON dump cannot carry.
* ``test_stream_time``: a VCR benchmark that replays recorded HTTP traffic; the router makes
  no HTTP calls of its own and its fake arms none at all (``enable_vcr_tests`` is off).
* ``test_image_inputs``, ``test_image_tool_message``, ``test_pdf_inputs``,
  ``test_pdf_tool_message``, ``test_audio_inputs``: they download media from the internet,
  which the test suite must not need, and the scripted arms cannot read media anyway (the
  router passes any content through to its arms untouched).
"""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from bandit_router import ChatBanditRouter
from bandit_router.testing import ScriptedArm

# Async standard tests carry no marker of their own: anyio's plugin runs them.
pytestmark = pytest.mark.anyio


def _router_params() -> dict[str, Any]:
    return {
        "arms": {
            "scripted-a": ScriptedArm(model="scripted-a", seed=1),
            "scripted-b": ScriptedArm(model="scripted-b", seed=2),
        },
        # Every answer counts as right: the evaluator path runs on every call.
        "reward": lambda: 1.0,
        "seed": 0,
    }


class TestChatBanditRouterUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatBanditRouter]:
        return ChatBanditRouter

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return _router_params()

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # The router has no credentials of its own (its arms do), and unknown arguments are
        # refused rather than ignored: drop the unit tests' placeholder api_key.
        params = super().standard_chat_model_params
        params.pop("api_key", None)
        return params

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True


class TestChatBanditRouterIntegration(ChatModelIntegrationTests):
    @property
    def chat_model_class(self) -> type[ChatBanditRouter]:
        return ChatBanditRouter

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return _router_params()

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    @property
    def supports_json_mode(self) -> bool:
        return True

    @property
    def supports_anthropic_inputs(self) -> bool:
        # The scripted arms read Anthropic-style tool_use / thinking blocks as plain content.
        return True

    @property
    def supports_model_override(self) -> bool:
        # model="<arm>" pins that arm for the call.
        return True

    @property
    def model_override_value(self) -> str:
        return "scripted-b"

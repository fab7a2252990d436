"""A scripted fake chat model that calls tools, answers in JSON and streams usage (no API)."""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, Literal

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.output_parsers import (
    JsonOutputKeyToolsParser,
    JsonOutputParser,
    PydanticOutputParser,
    PydanticToolsParser,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableMap, RunnablePassthrough
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import is_basemodel_subclass
from pydantic import Field, PrivateAttr

__all__ = ["ScriptedArm"]

#: What a ``respond`` hook receives: the messages, the tools bound for this call (OpenAI
#: format) and the ``tool_choice``. It returns the answer, or ``None`` for the default one.
Respond = Callable[[list[BaseMessage], list[dict[str, Any]], Any], AIMessage | str | None]

_NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?")
# A quoted span: the quote must not sit inside a word, so "it's" and "what's" are not quotes.
_QUOTED = re.compile(r"(?<!\w)'([^'\n]+)'(?!\w)|(?<!\w)\"([^\"\n]+)\"(?!\w)")
_FORCING = ("any", "required")


def _text(message: BaseMessage | None) -> str:
    return "" if message is None else message.text


def _last_human(messages: Sequence[BaseMessage]) -> HumanMessage | None:
    for m in reversed(messages):
        if isinstance(m, HumanMessage):
            return m
    return None


def _tokens(text: str) -> int:
    """A crude, deterministic token count: about one token per word or symbol."""
    return max(1, len(re.findall(r"\w+|[^\w\s]", text)))


class _Filler:
    """Fills a JSON schema with values read from a prompt: numbers, then quoted strings."""

    def __init__(self, text: str, defs: Mapping[str, Any], perturb: bool) -> None:
        self.text = text
        self.numbers = iter(_NUMBER.findall(text))
        self.quoted = iter(a or b for a, b in _QUOTED.findall(text))
        self.defs = defs
        self.perturb = perturb

    def value(self, schema: Mapping[str, Any], name: str, depth: int = 0) -> Any:
        if depth > 8:  # a recursive schema: stop somewhere
            return None
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return self.value(self.defs.get(ref.rsplit("/", 1)[-1], {}), name, depth + 1)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        for key in ("anyOf", "oneOf", "allOf"):
            options = [s for s in schema.get(key) or () if s.get("type") != "null"]
            if options:
                return self.value(options[0], name, depth + 1)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), None)
        if kind in ("integer", "number"):
            raw = next(self.numbers, "0")
            num: float = int(float(raw)) if kind == "integer" else float(raw)
            return num + 1 if self.perturb else num
        if kind == "boolean":
            return True
        if kind == "array":
            items = schema.get("items")
            return [self.value(items, name, depth + 1)] if isinstance(items, Mapping) else []
        if kind == "object" or "properties" in schema:
            return self.object(schema, depth + 1)
        if kind == "null":
            return None
        quoted = next(self.quoted, None)
        if quoted is not None:
            return quoted
        return f"{name.replace('_', ' ')}: {self.text[:60]}".strip()

    def object(self, schema: Mapping[str, Any], depth: int = 0) -> dict[str, Any]:
        props = schema.get("properties") or {}
        return {k: self.value(v, k, depth) for k, v in props.items()}


def _tool_name(tool: Mapping[str, Any]) -> str:
    fn = tool.get("function")
    return str(fn["name"] if isinstance(fn, Mapping) else tool.get("name", ""))


def _tool_parameters(tool: Mapping[str, Any]) -> dict[str, Any]:
    fn = tool.get("function")
    params = (fn if isinstance(fn, Mapping) else tool).get("parameters") or {}
    return dict(params)


def _chosen_tool(tool_choice: Any) -> str | None:
    """The tool name a ``tool_choice`` forces, if it names one."""
    if isinstance(tool_choice, str) and tool_choice not in (*_FORCING, "auto", "none"):
        return tool_choice
    if isinstance(tool_choice, Mapping):
        fn = tool_choice.get("function")
        name = fn.get("name") if isinstance(fn, Mapping) else tool_choice.get("name")
        return str(name) if name else None
    return None


class ScriptedArm(BaseChatModel):
    """A fake chat model that reads its prompt and answers as a tool-calling model would.

    Unlike :class:`FakeArm`, which only answers ``"right"`` or ``"wrong"``, a scripted arm
    behaves enough like a real chat model to run agents and LangChain's standard chat-model
    tests offline:

    * with tools bound (its own :meth:`bind_tools`) it calls one: the tool ``tool_choice``
      names, else the tool whose name the last human message mentions, else the first. It
      does so when ``tool_choice`` forces a call (``"any"``, ``"required"``, a name) or, with
      ``"auto"``/``None``, when the conversation does not already end with a tool result.
      The arguments are read from the last human message: numbers in order for numeric
      fields, quoted text for strings; ``tool_accuracy`` is the probability they are right
      (otherwise every number is off by one).
    * with ``response_format`` bound (JSON mode or a JSON schema) it answers in JSON.
    * otherwise it answers ``reply`` (or relays the last tool result), cut at any ``stop``.
    * every answer reports ``usage_metadata`` and ``response_metadata["model_name"]``;
      streams split text into ``chunk_size`` pieces and tool arguments into two, and exactly
      one chunk (the last) carries the usage.

    ``responses`` replaces the answers by a script (cycled); ``respond`` by a function of
    ``(messages, tools, tool_choice)`` returning a message, a string, or ``None`` for the
    default answer.

    Attributes:
        model: Reported ``response_metadata["model_name"]``.
        reply: The text answer when no tool is called.
        responses: A script of answers (messages or strings), used in turn and cycled.
        respond: A function computing the answer (see above).
        tool_accuracy: Probability that a tool call's arguments are right, in [0, 1].
        seed: Seed of the arm's generator (for ``tool_accuracy``).
        chunk_size: Characters per streamed text chunk.
        latency: Seconds each call takes.
    """

    model: str = "scripted"
    reply: str = "Hello! This is a scripted answer."
    responses: Sequence[str | AIMessage] | None = None
    respond: Respond | None = None
    tool_accuracy: float = Field(default=1.0, ge=0.0, le=1.0)
    seed: int | None = None
    chunk_size: int = Field(default=8, ge=1)
    latency: float = Field(default=0.0, ge=0.0)

    _rng: random.Random = PrivateAttr()
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _calls: int = PrivateAttr(default=0)
    _ids: Iterator[int] = PrivateAttr(default_factory=itertools.count)

    def model_post_init(self, context: Any, /) -> None:
        """Seed the generator."""
        self._rng = random.Random(self.seed)

    @property
    def _llm_type(self) -> str:
        return "bandit-router-scripted-arm"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model": self.model}

    @property
    def calls(self) -> int:
        """How many calls reached this arm."""
        return self._calls

    # --- tools and structured output ----------------------------------------------------------

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | dict[str, Any] | bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools in the OpenAI format, as real chat models do.

        Args:
            tools: Tools, functions, pydantic or TypedDict classes, or tool schemas.
            tool_choice: ``"auto"``, ``"none"``, ``"any"``/``"required"``/``True`` or a tool
                name (or an OpenAI/Anthropic ``tool_choice`` dict).
            **kwargs: Bound as they are (``strict``, ``parallel_tool_calls`` are accepted
                and ignored).
        """
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None and tool_choice is not False:
            kwargs["tool_choice"] = "any" if tool_choice is True else tool_choice
        return self.bind(tools=formatted, **kwargs)

    def with_structured_output(
        self,
        schema: dict[str, Any] | type,
        *,
        include_raw: bool = False,
        method: Literal["function_calling", "json_mode", "json_schema"] = "function_calling",
        strict: bool | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, dict[str, Any] | Any]:
        """Answer in the shape of ``schema``, by a forced tool call or in JSON.

        Args:
            schema: A pydantic class (the output is an instance), a TypedDict class, or a
                JSON / OpenAI tool schema (the output is a dict).
            include_raw: Return ``{"raw", "parsed", "parsing_error"}`` instead.
            method: ``"function_calling"`` (a forced tool call), ``"json_schema"`` (JSON
                following the schema) or ``"json_mode"`` (JSON whose keys the prompt names
                in quotes, as real JSON modes depend on the prompt).
            strict: Accepted and ignored.
            **kwargs: Must be empty.

        Raises:
            ValueError: On an unknown method or argument.
        """
        if kwargs:
            raise ValueError(f"Received unsupported arguments {kwargs}")
        tool = convert_to_openai_tool(schema)
        name = _tool_name(tool)
        pydantic = isinstance(schema, type) and is_basemodel_subclass(schema)
        structured = {"kwargs": {"method": method, "strict": strict}, "schema": schema}
        parser: Runnable[Any, Any]
        if method == "function_calling":
            llm = self.bind_tools(
                [schema], tool_choice=name, ls_structured_output_format=structured
            )
            parser = (
                PydanticToolsParser(tools=[schema], first_tool_only=True)  # type: ignore[list-item]
                if pydantic
                else JsonOutputKeyToolsParser(key_name=name, first_tool_only=True)
            )
        elif method in ("json_mode", "json_schema"):
            response_format: dict[str, Any] = (
                {"type": "json_object"}
                if method == "json_mode"
                else {
                    "type": "json_schema",
                    "json_schema": {"name": name, "schema": _tool_parameters(tool)},
                }
            )
            llm = self.bind(response_format=response_format, ls_structured_output_format=structured)
            parser = (
                PydanticOutputParser(pydantic_object=schema)  # type: ignore[arg-type]
                if pydantic
                else JsonOutputParser()
            )
        else:
            raise ValueError(
                f"method must be 'function_calling', 'json_mode' or 'json_schema', got {method!r}"
            )
        if not include_raw:
            return llm | parser
        parse = RunnablePassthrough.assign(
            parsed=itemgetter("raw") | parser, parsing_error=lambda _: None
        ).with_fallbacks(
            [RunnablePassthrough.assign(parsed=lambda _: None)], exception_key="parsing_error"
        )
        return RunnableMap(raw=llm) | parse

    # --- the answer ---------------------------------------------------------------------------

    def _answer(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: Mapping[str, Any]
    ) -> AIMessage:
        tools: list[dict[str, Any]] = list(kwargs.get("tools") or ())
        tool_choice = kwargs.get("tool_choice")
        with self._lock:
            n = self._calls
            self._calls += 1
            wrong = self._rng.random() >= self.tool_accuracy
            call_id = f"call_{self.model}_{next(self._ids)}"
        if self.responses:
            scripted = self.responses[n % len(self.responses)]
            return AIMessage(content=scripted) if isinstance(scripted, str) else scripted
        if self.respond is not None:
            custom = self.respond(messages, tools, tool_choice)
            if custom is not None:
                return AIMessage(content=custom) if isinstance(custom, str) else custom
        human = _last_human(messages)
        text = _text(human)
        forced = _chosen_tool(tool_choice)
        must_call = forced is not None or tool_choice in (*_FORCING, True)
        ends_with_result = bool(messages) and isinstance(messages[-1], ToolMessage)
        if tools and tool_choice != "none" and (must_call or not ends_with_result):
            tool = self._pick(tools, forced, text)
            params = _tool_parameters(tool)
            defs = {**params.get("definitions", {}), **params.get("$defs", {})}
            args = _Filler(text, defs, perturb=wrong).object(params)
            return AIMessage(
                content="",
                tool_calls=[
                    {"name": _tool_name(tool), "args": args, "id": call_id, "type": "tool_call"}
                ],
            )
        response_format = kwargs.get("response_format")
        if isinstance(response_format, Mapping):
            return AIMessage(content=json.dumps(self._json(response_format, text)))
        content = f"The tool returned: {_text(messages[-1])}" if ends_with_result else self.reply
        for s in stop or ():
            if s and s in content:
                content = content[: content.index(s)] or content[:1]
        return AIMessage(content=content)

    @staticmethod
    def _pick(tools: list[dict[str, Any]], forced: str | None, text: str) -> dict[str, Any]:
        if forced is not None:
            for t in tools:
                if _tool_name(t) == forced:
                    return t
            raise ValueError(f"tool_choice names {forced!r}, which is not a bound tool")
        mentioned = [t for t in tools if _tool_name(t) and _tool_name(t) in text]
        # The longest name mentioned: "magic_function_no_args" over "magic_function".
        return max(mentioned, key=lambda t: len(_tool_name(t))) if mentioned else tools[0]

    @staticmethod
    def _json(response_format: Mapping[str, Any], text: str) -> dict[str, Any]:
        spec = response_format.get("json_schema")
        if isinstance(spec, Mapping) and isinstance(spec.get("schema"), Mapping):
            schema = spec["schema"]
            defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
            return _Filler(text, defs, perturb=False).object(schema)
        # JSON mode has no schema: like a real model, take the keys the prompt asks for.
        keys = [a or b for a, b in _QUOTED.findall(text)]
        return {k: f"{k}: {text[:60]}" for k in keys} or {"answer": text[:60]}

    def _finish(self, answer: AIMessage, messages: list[BaseMessage]) -> AIMessage:
        """Add usage and metadata, as a provider's response would carry them."""
        prompt = " ".join(m.text for m in messages)
        out = _text(answer) + "".join(json.dumps(tc["args"]) for tc in answer.tool_calls)
        input_tokens, output_tokens = _tokens(prompt), _tokens(out)
        return answer.model_copy(
            update={
                "response_metadata": {
                    **answer.response_metadata,
                    "model_name": self.model,
                    "finish_reason": "tool_calls" if answer.tool_calls else "stop",
                },
                "usage_metadata": answer.usage_metadata
                or {
                    "input_tokens": input_tokens,
                    "output_tokens": output_tokens,
                    "total_tokens": input_tokens + output_tokens,
                },
            }
        )

    def _chunks(self, message: AIMessage) -> list[AIMessageChunk]:
        text = message.content if isinstance(message.content, str) else ""
        pieces: list[AIMessageChunk] = [
            AIMessageChunk(content=text[i : i + self.chunk_size])
            for i in range(0, len(text), self.chunk_size)
        ]
        for index, tc in enumerate(message.tool_calls):
            args = json.dumps(tc["args"], ensure_ascii=False)
            cut = len(args) // 2
            pieces.append(
                AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        tool_call_chunk(name=tc["name"], args=args[:cut], id=tc["id"], index=index)
                    ],
                )
            )
            pieces.append(
                AIMessageChunk(
                    content="",
                    tool_call_chunks=[tool_call_chunk(args=args[cut:], index=index)],
                )
            )
        # The last chunk carries the usage (once) and the metadata, and says it is the last.
        pieces.append(
            AIMessageChunk(
                content="",
                usage_metadata=message.usage_metadata,
                response_metadata=message.response_metadata,
                chunk_position="last",
            )
        )
        return pieces

    # --- BaseChatModel ------------------------------------------------------------------------

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency:
            time.sleep(self.latency)
        message = self._finish(self._answer(messages, stop, kwargs), messages)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if self.latency:
            await asyncio.sleep(self.latency)
        message = self._finish(self._answer(messages, stop, kwargs), messages)
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if self.latency:
            time.sleep(self.latency)
        for piece in self._chunks(self._finish(self._answer(messages, stop, kwargs), messages)):
            chunk = ChatGenerationChunk(message=piece)
            if run_manager is not None:
                run_manager.on_llm_new_token(_text(piece), chunk=chunk)
            yield chunk

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        if self.latency:
            await asyncio.sleep(self.latency)
        for piece in self._chunks(self._finish(self._answer(messages, stop, kwargs), messages)):
            chunk = ChatGenerationChunk(message=piece)
            if run_manager is not None:
                await run_manager.on_llm_new_token(_text(piece), chunk=chunk)
            yield chunk

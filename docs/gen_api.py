"""Write docs/api.md, the API reference, from the public names and their docstrings.

Every name in the ``__all__`` of each module of :data:`MODULES` gets a section: its
signature and its docstring (Google style, turned into Markdown). The command line's help
(``bandit-router --help`` and each subcommand's) follows. ``tests/test_api_docs.py`` checks
that every public name has its section, so rerun this after changing the public API:

    python docs/gen_api.py            # rewrites docs/api.md
    python docs/gen_api.py --check    # exit 1 if docs/api.md is out of date
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import inspect
import io
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "api.md"

#: The documented modules, in order. A module that cannot be imported (an integration that
#: is not installed) is listed with a note instead.
MODULES = (
    "bandit_router",
    "bandit_router.policies",
    "bandit_router.stores",
    "bandit_router.rewards",
    "bandit_router.langchain",
    "bandit_router.core",
    "bandit_router.core.routing",
    "bandit_router.core.failures",
    "bandit_router.core.timeouts",
    "bandit_router.core.scoring",
    "bandit_router.core.observer",
    "bandit_router.budget",
    "bandit_router.testing",
    "bandit_router.telemetry",
    "bandit_router.replay",
    "bandit_router_redis",
    "bandit_router_redis.testing",
    "bandit_router_langsmith",
    "bandit_router_langsmith.testing",
)

SECTIONS = {
    "Args",
    "Arguments",
    "Attributes",
    "Returns",
    "Yields",
    "Raises",
    "Example",
    "Examples",
    "Note",
    "Notes",
    "Warning",
    "See Also",
}
CODE_SECTIONS = {"Example", "Examples"}
LIST_SECTIONS = {"Args", "Arguments", "Attributes", "Raises"}


def public_modules() -> list[tuple[str, ModuleType | None]]:
    """Import every module of :data:`MODULES` (``None`` for those that are not installed)."""
    out: list[tuple[str, ModuleType | None]] = []
    for name in MODULES:
        try:
            out.append((name, importlib.import_module(name)))
        except ImportError:
            out.append((name, None))
    return out


def heading(module: str, name: str) -> str:
    """The heading of a public name's section (what the test looks for)."""
    return f"### `{module}.{name}`"


# --- docstrings ---------------------------------------------------------------------------------

_ROLE = re.compile(r":(?:class|meth|func|data|attr|mod|exc|obj):`~?([^`]+)`")


def inline(text: str) -> str:
    """Sphinx roles and double backticks as Markdown code spans."""

    def role(m: re.Match[str]) -> str:
        target = m.group(1)
        if "<" in target and target.endswith(">"):  # :meth:`text <target>`
            target = target.split("<", 1)[0].strip()
        return f"`{target.split('.')[-1] if m.group(0).count('~') else target}`"

    text = _ROLE.sub(role, text)
    return re.sub(r"``([^`]+)``", r"`\1`", text)


def render_docstring(doc: str | None) -> str:
    """A Google-style docstring as Markdown."""
    if not doc:
        return ""
    lines = inspect.cleandoc(doc).splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        title = stripped[:-1] if stripped.endswith(":") else None
        if title in SECTIONS and not line.startswith(" "):
            body: list[str] = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith(" ")):
                body.append(lines[i][4:] if lines[i].startswith("    ") else lines[i].strip())
                i += 1
            while body and not body[-1].strip():
                body.pop()
            out.append(f"**{title}**\n")
            if title in CODE_SECTIONS:
                out.extend(code_or_text(body))
            elif title in LIST_SECTIONS:
                out.extend(bullets(body))
            else:
                out.append(inline(" ".join(b.strip() for b in body)) + "\n")
            continue
        if stripped.endswith("::") and not stripped.startswith(".."):
            # A literal block follows: keep the text, fence the indented block.
            out.append(inline(line[:-1] if stripped != "::" else "").rstrip() + "\n" * 0)
            i += 1
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith("    ")):
                block.append(lines[i][4:])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            while block and not block[0].strip():
                block.pop(0)
            out.append("\n```python\n" + "\n".join(block) + "\n```\n")
            continue
        if stripped.startswith(">>>"):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i].strip())
                i += 1
            out.append("```python\n" + "\n".join(block) + "\n```\n")
            continue
        out.append(inline(line))
        i += 1
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def bullets(body: list[str]) -> list[str]:
    """``name: text`` items (continuation lines indented) as a Markdown list."""
    items: list[str] = []
    for line in body:
        if not line.strip():
            continue
        if line.startswith(" ") and items:
            items[-1] += " " + line.strip()
            continue
        name, sep, rest = line.partition(":")
        # "name: text", where a name is one word or a type such as "dict[str, int]".
        if sep and name.strip() and re.fullmatch(r"[\w.*\[\], |]+", name.strip()):
            items.append(f"- `{name.strip()}`: {rest.strip()}")
        else:
            items.append(f"- {line.strip()}")
    return [inline(item) for item in items] + [""]


def code_or_text(body: list[str]) -> list[str]:
    """An Example section: code, or text with ``::`` blocks."""
    text = "\n".join(body).strip()
    if "::" in text or text.startswith(">>>") or not text:
        return [render_docstring(text)]
    return ["```python\n" + text + "\n```\n"]


# --- signatures ---------------------------------------------------------------------------------

_ADDRESS = re.compile(r"<(function|bound method|class|built-in function) ([\w.]+)[^>]*>")


_DOTTED = re.compile(r"\b(?:[a-z_]\w*\.)+(?=[A-Za-z_]\w*)")


def short(text: str) -> str:
    """``collections.abc.Mapping[str, typing.Any]`` as ``Mapping[str, Any]``."""
    return _DOTTED.sub("", text)


def value_repr(value: object) -> str:
    """``repr`` without memory addresses or set order (stable across runs)."""
    if value is inspect.Parameter.empty:
        return ""
    if inspect.isfunction(value) or inspect.isclass(value) or inspect.isbuiltin(value):
        return str(value.__qualname__)
    if isinstance(value, frozenset | set):
        items = ", ".join(sorted(repr(v) for v in value))
        return f"{type(value).__name__}({{{items}}})"
    if type(value).__module__ in ("typing", "collections.abc", "types"):
        return short(repr(value))
    text = repr(value)
    text = _ADDRESS.sub(lambda m: m.group(2), text)
    text = re.sub(r"<([\w.]+) object at 0x[0-9a-f]+>", r"<\1>", text)
    return re.sub(r" at 0x[0-9a-f]+", "", text)


def annotation(ann: object) -> str:
    """An annotation as source text (postponed annotations are strings already)."""
    if ann is inspect.Parameter.empty:
        return ""
    if isinstance(ann, str):
        return ann
    return short(inspect.formatannotation(ann))


def signature(obj: Callable[..., Any], name: str, *, prefix: str = "def") -> str:
    """``def name(params) -> ret``, one parameter per line when long."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return f"{prefix} {name}(...)"
    parts: list[str] = []
    seen_kw_only = False
    is_model = inspect.isclass(obj) and hasattr(obj, "model_fields")
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL and is_model:
            continue  # pydantic models take keyword arguments only
        if p.kind is p.VAR_POSITIONAL:
            seen_kw_only = True
            text = f"*{p.name}"
        elif p.kind is p.VAR_KEYWORD:
            text = f"**{p.name}"
        else:
            if p.kind is p.KEYWORD_ONLY and not seen_kw_only:
                parts.append("*")
                seen_kw_only = True
            text = p.name
        ann = annotation(p.annotation)
        if ann:
            text += f": {ann}"
        if p.default is not p.empty:
            text += f" = {value_repr(p.default)}" if ann else f"={value_repr(p.default)}"
        parts.append(text)
        if p.kind is p.POSITIONAL_ONLY and (
            list(sig.parameters.values()).index(p) == len(sig.parameters) - 1
            or list(sig.parameters.values())[list(sig.parameters.values()).index(p) + 1].kind
            is not p.POSITIONAL_ONLY
        ):
            parts.append("/")
    ret = annotation(sig.return_annotation)
    tail = f" -> {ret}" if ret and prefix != "class" else ""
    one = f"{prefix} {name}({', '.join(parts)}){tail}"
    if len(one) <= 92:
        return one
    inner = "".join(f"    {p},\n" for p in parts)
    return f"{prefix} {name}(\n{inner}){tail}"


# --- constants' ``#:`` comments ------------------------------------------------------------------


def constant_doc(module: ModuleType, name: str) -> str:
    """The ``#:`` comment above ``name``'s assignment in the module's package, if any."""
    files: list[Path] = []
    file = getattr(module, "__file__", None)
    if file:
        base = Path(file).parent
        files = sorted(base.rglob("*.py"))
    pattern = re.compile(rf"^{re.escape(name)}\s*(:[^=]*)?=")
    for path in files:
        lines = path.read_text("utf-8").splitlines()
        for i, line in enumerate(lines):
            if pattern.match(line):
                doc: list[str] = []
                j = i - 1
                while j >= 0 and lines[j].lstrip().startswith("#:"):
                    doc.insert(0, lines[j].lstrip()[2:].strip())
                    j -= 1
                if doc:
                    return inline(" ".join(doc)) + "\n"
    return ""


# --- one name -----------------------------------------------------------------------------------


def own_members(cls: type) -> Iterator[tuple[str, Any]]:
    """Public methods and properties defined by ``cls`` itself (not inherited)."""
    pydantic = hasattr(cls, "model_fields")
    for attr, value in cls.__dict__.items():
        if attr.startswith("_") or (pydantic and attr.startswith("model_")):
            continue
        if isinstance(value, staticmethod | classmethod):
            yield attr, value.__func__
        elif isinstance(value, property) or inspect.isfunction(value):
            yield attr, value


def document_class(qual: str, cls: type) -> list[str]:
    """A class: its signature, bases, docstring, then its own public methods."""
    bases = [b.__name__ for b in cls.__bases__ if b is not object]
    head = f"class {cls.__name__}" + (f"({', '.join(bases)})" if bases else "")
    out: list[str] = []
    if issubclass(cls, BaseException):
        out.append(f"```python\n{head}\n```\n")
    else:
        init_sig = signature(cls, cls.__name__, prefix="class")
        if dataclasses.is_dataclass(cls) or "(" in init_sig:
            out.append(f"```python\n{init_sig}\n```\n")
        if bases:
            out.append(f"Bases: {', '.join(f'`{b}`' for b in bases)}\n")
    out.append(render_docstring(cls.__doc__))
    for attr, member in own_members(cls):
        if isinstance(member, property):
            out.append(f"#### `{qual}.{attr}` (property)\n")
            out.append(render_docstring(member.__doc__) or "\n")
            continue
        kind = "async def" if inspect.iscoroutinefunction(member) else "def"
        out.append(f"#### `{qual}.{attr}`\n")
        out.append(f"```python\n{signature(member, attr, prefix=kind)}\n```\n")
        out.append(render_docstring(member.__doc__) or "\n")
    return out


def document(module: ModuleType, modname: str, name: str, seen: dict[int, str]) -> list[str]:
    """The section of one public name (a link when the object was documented already)."""
    obj = getattr(module, name)
    out = [heading(modname, name) + "\n"]
    if id(obj) in seen and (inspect.isclass(obj) or inspect.isfunction(obj)):
        first = seen[id(obj)]
        anchor = re.sub(r"[^\w\- ]", "", first.lower()).replace(" ", "-")
        out.append(f"The same object as [`{first}`](#{anchor}).\n")
        return out
    qual = f"{modname}.{name}"
    if inspect.isclass(obj):
        seen[id(obj)] = qual
        out.extend(document_class(qual, obj))
    elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
        seen[id(obj)] = qual
        kind = "async def" if inspect.iscoroutinefunction(obj) else "def"
        out.append(f"```python\n{signature(obj, name, prefix=kind)}\n```\n")
        out.append(render_docstring(obj.__doc__))
    else:
        out.append(f"```python\n{name} = {value_repr(obj)}\n```\n")
        out.append(constant_doc(module, name))
    return out


# --- the command line ---------------------------------------------------------------------------


def cli_help() -> list[str]:
    """``bandit-router --help`` and each subcommand's help, as the console shows them."""
    try:
        from bandit_router.cli import build_parser
    except ImportError:
        return []
    out = ["## The command line: `bandit-router`\n"]
    parser = build_parser()
    out.append("```text\n$ bandit-router --help\n" + help_text(parser) + "```\n")
    for action in parser._actions:
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for sub_name, sub in choices.items():
                out.append(f"### `bandit-router {sub_name}`\n")
                text = help_text(sub)
                out.append(f"```text\n$ bandit-router {sub_name} --help\n{text}```\n")
    return out


def help_text(parser: argparse.ArgumentParser) -> str:
    """A parser's ``--help`` output."""
    buffer = io.StringIO()
    # A fixed width, so the page does not depend on the terminal it was made in.
    with contextlib.redirect_stdout(buffer), _columns(100):
        parser.print_help()
    return buffer.getvalue()


@contextlib.contextmanager
def _columns(width: int) -> Iterator[None]:
    import os

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


# --- the page -----------------------------------------------------------------------------------


def build() -> str:
    """The whole page."""
    modules = public_modules()
    out = [
        "# API reference\n",
        "Every public name of bandit-router and of its integrations, with its signature and "
        "docstring. This page is generated: `python docs/gen_api.py` rewrites it from the code "
        "(and `tests/test_api_docs.py` fails when a public name is missing). The guides are "
        "[concepts](concepts.md), [the router](router.md), [how-to](howto.md) and "
        "[troubleshooting](troubleshooting.md).\n",
        "## Contents\n",
    ]
    for modname, module in modules:
        anchor = modname.replace(".", "")
        names = ", ".join(f"`{n}`" for n in getattr(module, "__all__", [])) if module else ""
        suffix = f": {names}" if names else " (not installed)"
        out.append(f"- [`{modname}`](#{anchor}){suffix}")
    out.append("- [The command line: `bandit-router`](#the-command-line-bandit-router)\n")
    seen: dict[int, str] = {}
    for modname, module in modules:
        out.append(f"## `{modname}`\n")
        if module is None:
            out.append(f"Not installed where this page was generated (`{modname}`).\n")
            continue
        summary = (module.__doc__ or "").strip().split("\n\n", 1)[0]
        out.append(inline(summary) + "\n")
        for name in module.__all__:
            out.extend(document(module, modname, name, seen))
    out.extend(cli_help())
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write docs/api.md, or check it (``--check``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/api.md is stale")
    args = parser.parse_args(argv)
    text = build()
    if args.check:
        current = OUT.read_text("utf-8") if OUT.exists() else ""
        if current != text:
            print("docs/api.md is out of date: run python docs/gen_api.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, "utf-8")
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""docs/api.md documents every public name: the ``__all__`` of each public module (read at
test time, so a name added later must be documented too) and every CLI subcommand.

When this fails, regenerate the page: ``python docs/gen_api.py``.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pkgutil
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api.md"
FIX = "document it: run `python docs/gen_api.py` to regenerate docs/api.md"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_api", ROOT / "docs" / "gen_api.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()
MODULES = [name for name in GEN.MODULES if importlib.util.find_spec(name.split(".")[0])]


@pytest.mark.parametrize("modname", MODULES)
def test_every_public_name_has_a_section(modname: str) -> None:
    try:
        module = importlib.import_module(modname)
    except ImportError:
        pytest.skip(f"{modname} is not importable here")
    text = API.read_text("utf-8")
    assert f"## `{modname}`" in text, f"module {modname} has no section in docs/api.md; {FIX}"
    missing = [n for n in module.__all__ if GEN.heading(modname, n) not in text]
    assert not missing, f"{modname}: {missing} missing from docs/api.md; {FIX}"


def test_every_public_submodule_is_listed() -> None:
    # A new public module (no leading underscore) must be added to gen_api.MODULES.
    import bandit_router

    found = {
        f"bandit_router.{m.name}"
        for m in pkgutil.iter_modules(bandit_router.__path__)
        if not m.name.startswith("_") and m.name != "cli"  # the CLI has its own section
    }
    assert found <= set(GEN.MODULES), f"add {sorted(found - set(GEN.MODULES))} to MODULES"


def test_every_cli_subcommand_has_a_section() -> None:
    try:
        from bandit_router.cli import build_parser
    except ImportError:
        pytest.skip("no bandit_router.cli yet")
    text = API.read_text("utf-8")
    parser = build_parser()
    subcommands = [
        name
        for action in parser._actions
        if isinstance(action, argparse._SubParsersAction)
        for name in action.choices
    ]
    assert subcommands
    missing = [s for s in subcommands if f"### `bandit-router {s}`" not in text]
    assert not missing, f"CLI subcommands {missing} missing from docs/api.md; {FIX}"


def test_page_is_stable() -> None:
    # The generator gives the same page twice (no memory addresses, no set order).
    assert GEN.build() == GEN.build()

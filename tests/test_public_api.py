"""The pinned public surface: exported names, their docs, and the runtime dependencies.

Changing a list below is a public API change: it needs a CHANGELOG entry in the same commit.
"""

from __future__ import annotations

import importlib
import inspect
import re
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

import bandit_router
import bandit_router.budget
import bandit_router.policies
import bandit_router.stores

ROOT = Path(__file__).resolve().parent.parent

PINNED: dict[str, list[str]] = {
    "bandit_router": [
        "AllArmsFailedError",
        "ArmStatistics",
        "Bandit",
        "BanditRouterError",
        "BanditRouterRunnable",
        "ChatBanditRouter",
        "ConfigurationError",
        "CorruptStateError",
        "Decision",
        "DecisionError",
        "DuplicateDecisionError",
        "InvalidRewardError",
        "PendingDecision",
        "Prior",
        "Selection",
        "StoreError",
        "UnknownArmError",
        "UnknownDecisionError",
        "UnsupportedEventLoopError",
        "__version__",
    ],
    "bandit_router.budget": [
        "Allocation",
        "Budget",
        "BudgetChoice",
        "BudgetWarning",
        "DEFAULT_WINDOW",
        "Ledger",
        "Mixture",
        "allocate",
        "best_mixture",
        "best_shared_mixture",
        "choose",
        "expected_costs",
        "frontier",
        "mixture",
        "optimistic",
    ],
    "bandit_router.policies": [
        "BoundedPolicy",
        "IndexBounds",
        "KLUCB",
        "Policy",
        "RewardTransform",
        "ThompsonSampling",
        "UCB1",
        "UCBTuned",
    ],
    "bandit_router.stores": [
        "BanditState",
        "Chooser",
        "InMemoryStore",
        "Outcome",
        "PendingDecision",
        "Rules",
        "SQLiteStore",
        "StateStore",
    ],
}
MODULES: dict[str, ModuleType] = {
    "bandit_router": bandit_router,
    "bandit_router.budget": bandit_router.budget,
    "bandit_router.policies": bandit_router.policies,
    "bandit_router.stores": bandit_router.stores,
}
RUNTIME_DEPENDENCIES = {"langchain-core", "anyio", "tenacity", "opentelemetry-api"}
POLICY_CLASSES = ["KLUCB", "ThompsonSampling", "UCB1", "UCBTuned"]
YEAR = re.compile(r"\b(19|20)\d\d\b")


@pytest.mark.parametrize("module", sorted(PINNED))
def test_all_is_pinned(module: str) -> None:
    exported = list(MODULES[module].__all__)
    # Compared sorted: the order inside __all__ is ruff's (RUF022 puts CONSTANT_CASE first).
    assert sorted(exported) == PINNED[module]
    assert len(set(exported)) == len(exported)


def _exports() -> list[tuple[str, str]]:
    return [(m, name) for m in sorted(PINNED) for name in PINNED[m]]


def _documented_alias(obj: object, name: str) -> bool:
    """A type alias cannot carry a docstring; accept a Sphinx ``#:`` comment above it."""
    for path in (ROOT / "bandit_router").rglob("*.py"):
        lines = path.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            defines = line.startswith((f"{name} = ", f"{name}: "))  # annotated too (Final)
            if defines and i > 0 and lines[i - 1].startswith("#:"):
                return True
    return False


@pytest.mark.parametrize(("module", "name"), _exports(), ids=lambda v: str(v))
def test_every_name_is_importable_and_documented(module: str, name: str) -> None:
    obj = getattr(importlib.import_module(module), name)
    if name == "__version__":
        assert isinstance(obj, str)
        assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?(a|b|rc|dev|post)\d*)?", obj)
        return
    if not (inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj)):
        assert _documented_alias(obj, name), f"{module}.{name} has no docstring or #: comment"
        return
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else obj.__doc__
    assert doc, f"{module}.{name} has no docstring of its own"
    assert doc.strip(), f"{module}.{name} has an empty docstring"
    # Dataclasses invent a "Name(field, ...)" docstring when there is none.
    assert not doc.startswith(f"{name}("), f"{module}.{name} only has the generated docstring"
    if inspect.isclass(obj):
        for attr, member in vars(obj).items():
            if attr.startswith("_") or not (
                inspect.isfunction(member) or isinstance(member, property)
            ):
                continue
            assert member.__doc__, f"{module}.{name}.{attr} has no docstring"


def test_the_same_object_is_exported_everywhere() -> None:
    assert bandit_router.PendingDecision is bandit_router.stores.PendingDecision


@pytest.mark.parametrize("name", POLICY_CLASSES)
def test_policy_docstrings_give_the_formula_and_a_citation(name: str) -> None:
    doc = getattr(bandit_router.policies, name).__doc__
    assert doc is not None
    assert "Formula" in doc
    assert YEAR.search(doc), f"{name} cites no year"


def test_budget_rule_gives_the_formula_and_a_citation() -> None:
    doc = bandit_router.budget.__doc__
    assert doc is not None
    assert "maximise  sum_i p_i U_i" in doc
    assert "Agrawal & Devanur" in doc
    assert YEAR.search(doc)


def test_every_exported_policy_class_is_checked() -> None:
    protocols = {"BoundedPolicy", "IndexBounds", "Policy", "RewardTransform"}
    assert sorted(set(bandit_router.policies.__all__) - protocols) == POLICY_CLASSES


def _distribution_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def test_runtime_dependencies_are_exactly_the_four() -> None:
    with (ROOT / "pyproject.toml").open("rb") as f:
        project = tomllib.load(f)["project"]
    deps = [_distribution_name(r) for r in project["dependencies"]]
    assert len(deps) == len(set(deps))
    assert set(deps) == RUNTIME_DEPENDENCIES
    # Nothing else may sneak in as a mandatory requirement through an unconditional marker.
    assert all(";" not in r for r in project["dependencies"])

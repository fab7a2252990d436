"""`bandit-router --help` and every subcommand's help are complete: each option explained, each
subcommand described, and the console script installed."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

import pytest

from bandit_router.cli import build_parser, main


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.update(action.choices)
    return found


def test_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for name in subparsers():
        assert name in text
    assert "stats" in subparsers()
    assert "replay" in subparsers()


@pytest.mark.parametrize("name", sorted(subparsers()))
def test_every_option_of_every_subcommand_is_explained(name: str) -> None:
    sub = subparsers()[name]
    assert sub.description, f"bandit-router {name} has no description"
    unexplained = [
        "/".join(a.option_strings) or a.dest
        for a in sub._actions
        if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()
    ]
    assert not unexplained, f"bandit-router {name}: options without help: {unexplained}"


@pytest.mark.parametrize("name", sorted(subparsers()))
def test_subcommand_help_runs(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: bandit-router {name}")


def test_console_script_runs_stats() -> None:
    exe = shutil.which("bandit-router", path=os.path.dirname(sys.executable))
    if exe is None:
        pytest.skip("the bandit-router console script is not installed (pip install -e .)")
    proc = subprocess.run(
        [exe, "stats", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert "--store URL" in proc.stdout

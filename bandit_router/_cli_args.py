"""Argument types shared by the ``bandit-router`` subcommands (argparse ``type=`` functions)."""

from __future__ import annotations

import argparse
import math

__all__ = ["decay_arg", "nonneg_float"]


def nonneg_float(text: str) -> float:
    """A finite number >= 0 (a weight, lambda, a prior weight)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def decay_arg(text: str) -> float:
    """A decay: a number in (0, 1]."""
    value = nonneg_float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"decay must lie in (0, 1], got {text}")
    return value

"""The package version, read by hatchling and re-exported as ``bandit_router.__version__``."""

from __future__ import annotations

__version__ = "0.1.0"

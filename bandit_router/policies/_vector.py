"""numpy, when it is installed: the vectorised paths of the policies (numpy is optional)."""

from __future__ import annotations

from types import ModuleType

__all__ = ["np"]

np: ModuleType | None
try:
    import numpy as np
except ImportError:  # pragma: no cover - the pure-Python paths run instead
    np = None

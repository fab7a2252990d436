"""Fixtures for the whole suite."""

from __future__ import annotations

# The local OpenAI-compatible server and real ChatOpenAI clients (tests/support/fixtures.py).
pytest_plugins = ["tests.support.fixtures"]

"""Test support shared across the suite (imported as ``tests.support``)."""

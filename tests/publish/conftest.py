"""Fixtures for tests/publish live in pubhelpers.py, which tests can import."""

from pubhelpers import *  # noqa: F403

"""Fixtures for tests/quantize live in quanthelpers.py, which tests can import."""

from quanthelpers import *  # noqa: F403

"""Re-export for tests/real, which imports `quanthelpers` by its old top-level name.

The helpers live in tests/quantize/quanthelpers.py (`from quantize.quanthelpers import ...`);
delete this file once tests/real imports them from there.
"""

from quantize.quanthelpers import RELEASE, make_release, quantize_recorded

__all__ = ["RELEASE", "make_release", "quantize_recorded"]

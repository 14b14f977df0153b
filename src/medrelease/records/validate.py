"""Check a record read from disk against its TypedDict: defined in core/validate.py (the
runner validates a step's previous record too), named here for the record readers."""

from medrelease.core.validate import SHOWN, check_record, record_problems

__all__ = ["SHOWN", "check_record", "record_problems"]

"""The records steps write and other steps read, typed once.

`manifest.json`'s step records (`manifest.py`, on the common fields of
`core.manifest.StepRecord`), `gates/report.json` (`gate_report.py`) and the quantize
record (`quantize.py`) are TypedDicts: the writers build them under those types (mypy checks
the keys), and every reader that loads one from disk validates it first (pydantic, through
`core.validate.check_record`), so a truncated or hand-edited file is one clear InputError (which
file, which key, which step to re-run) instead of a KeyError inside a template.
`lm_eval_command.py` spells an lm-eval command line once, for the gate report's
`reproduce` and for the card's.

This package sits beside stages/checks/executors (.importlinter): every step, the card and
publish import it without importing each other. It imports only `core` and pydantic.
"""

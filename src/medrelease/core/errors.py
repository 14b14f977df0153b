"""The error tree every user-facing failure goes through.

`str(err)` is the one line a user sees; `hint` says how to fix it. Each class carries the
process exit code the CLI returns, so scripts and CI can tell failures apart:

====  =====================================================================
code  meaning
====  =====================================================================
0     success
1     unexpected internal error (a bug: re-run with --debug and report it)
2     usage or recipe error (bad YAML, unknown key, bad option)
3     input error (a stage is missing, incompatible, corrupt, or pickle-only)
4     a gate rule failed (the candidate is not releasable)
5     verification failed (merged model or quant does not pass its checks)
6     publishing failed (Hub refused, network, conflict)
7     environment error (not enough disk, missing tool, workdir locked)
130   interrupted (Ctrl-C)
====  =====================================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self


@dataclass(frozen=True)
class Problem:
    """One thing wrong: what, where (file:line, or the option that said it), how to fix it."""

    message: str
    where: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message

    def to_dict(self) -> dict[str, str | None]:
        return {"message": self.message, "where": self.where, "hint": self.hint}


class MedreleaseError(Exception):
    """Base class: a known failure with a message meant for the user.

    Most errors are one problem. A check that finds several (`medrelease validate`, the recipe
    schema) raises one error carrying all of them in `problems`, so the user fixes them in one
    round; `str()` then lists every problem, one per line, after the summary."""

    exit_code = 1
    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        where: str | None = None,
        problems: Sequence[Problem] = (),
    ):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.where = where
        self.problems: tuple[Problem, ...] = tuple(problems) or (Problem(message, where, hint),)

    @classmethod
    def several(cls, problems: Sequence[Problem], *, what: str = "problems", hint: str) -> Self:
        """One error for `problems`: the problem itself when there is one, else a summary
        ("3 problems") carrying each; `hint` is the fix for the whole list."""
        if len(problems) == 1:
            p = problems[0]
            return cls(p.message, where=p.where, hint=p.hint or hint)
        return cls(f"{len(problems)} {what}", hint=hint, problems=problems)

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if len(self.problems) > 1:
            text += "".join(f"\n  {p}" for p in self.problems)
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "error": self.kind,
            "message": self.message,
            "where": self.where,
            "hint": self.hint,
            "exit_code": self.exit_code,
            "problems": [p.to_dict() for p in self.problems],
        }


class UsageError(MedreleaseError):
    """Wrong command-line usage."""

    exit_code = 2
    kind = "usage"


class RecipeError(MedreleaseError):
    """The recipe file is malformed or invalid."""

    exit_code = 2
    kind = "recipe"


class InputError(MedreleaseError):
    """A stage checkpoint or other input is missing, incompatible or corrupt."""

    exit_code = 3
    kind = "input"


class GateFailed(MedreleaseError):
    """At least one gate rule did not hold: the candidate must not be released."""

    exit_code = 4
    kind = "gate"


class VerificationError(MedreleaseError):
    """A produced artifact (merged model, quant) failed its checks."""

    exit_code = 5
    kind = "verification"


class PublishError(MedreleaseError):
    """The Hub (or export target) refused or failed the upload."""

    exit_code = 6
    kind = "publish"


class EnvironmentProblem(MedreleaseError):
    """The machine cannot do the work: disk space, missing tool, locked workdir."""

    exit_code = 7
    kind = "environment"

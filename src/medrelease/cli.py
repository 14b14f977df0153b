"""The `medrelease` command: parse arguments, call the library, map errors to exit codes.

Start-up imports no torch: every command imports its step inside the function body.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys
from collections.abc import Sequence

import typer
from typer._click import exceptions as click_exc  # typer 0.29 vendors click

from medrelease.commands import register_all
from medrelease.core.errors import MedreleaseError

app = typer.Typer(
    name="medrelease",
    help="Turn the stage checkpoints of a fine-tuned LLM into a verified, documented, "
    "published release.\n\nExit codes: 0 ok, 1 internal error, 2 usage/recipe error, "
    "3 input error, 4 gate failed, 5 verification failed, 6 publish failed, "
    "7 environment (disk, lock, tool), 130 interrupted.",
    pretty_exceptions_enable=False,
    # click's plain help: typer's rich help imports rich.markdown, markdown-it and pygments,
    # doubling start-up (`medrelease --help` has a 0.3 s budget; see docs/benchmarks.md)
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110},
)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(
        False, "--debug", help="show full tracebacks (also MEDRELEASE_DEBUG=1)", is_eager=True
    ),
    version: bool = typer.Option(False, "--version", help="print the version and exit"),
) -> None:
    if debug:
        os.environ["MEDRELEASE_DEBUG"] = "1"
    if version:
        from medrelease import __version__

        typer.echo(f"medrelease {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


register_all(app)


def _debug() -> bool:
    return os.environ.get("MEDRELEASE_DEBUG", "") not in ("", "0", "false")


def _report(err: MedreleaseError, as_json: bool) -> None:
    from rich.markup import escape

    from medrelease.core.console import err_console, print_json
    from medrelease.core.secrets import redact as _redact

    def redact(text: str) -> str:  # and escaped: a message may hold "[...]" (a YAML list)
        return escape(_redact(text))

    if as_json:
        print_json(err.to_dict())
    head = f"{err.where}: {err.message}" if err.where else err.message
    err_console.print(f"[bold red]error:[/bold red] {redact(head)}", soft_wrap=True)
    if len(err.problems) > 1:  # each on its own line, with its own fix where it has one
        for p in err.problems:
            err_console.print(f"  [red]-[/red] {redact(str(p))}", soft_wrap=True)
            if p.hint and p.hint != err.hint:
                err_console.print(f"    [cyan]fix:[/cyan] {redact(p.hint)}", soft_wrap=True)
    if err.hint:
        err_console.print(f"[cyan]fix:[/cyan] {redact(err.hint)}", soft_wrap=True)


def _take_debug(args: list[str]) -> list[str]:
    """`--debug` is a global flag, accepted anywhere before `--` (the internal-error hint says
    "re-run with --debug", and users add it at the end): taken out before click parses."""
    end = args.index("--") if "--" in args else len(args)
    if "--debug" in args[:end]:
        os.environ["MEDRELEASE_DEBUG"] = "1"
        return [a for a in args[:end] if a != "--debug"] + args[end:]
    return args


def _command(args: list[str]) -> str:
    """The subcommand's name, for the interrupt message (the first word that is not a flag)."""
    return next((a for a in args if not a.startswith("-")), "")


def _interrupted(args: list[str]) -> int:
    from medrelease.core.console import interrupted_activity

    what = " ".join(w for w in ("medrelease", _command(args)) if w)
    doing = interrupted_activity()
    sys.stderr.write(
        f"interrupted: {what} stopped{f' during {doing}' if doing else ''}; nothing "
        "half-written was left in place (finished work is kept: run it again to resume)\n"
    )
    return 130


def _is_stdout_closed(exc: BrokenPipeError) -> bool:
    from medrelease.core.console import StdoutClosed

    return isinstance(exc, StdoutClosed)


def _stdout_closed() -> int:
    """The reader of stdout went away (`medrelease publish --dry-run | head`): what it read is
    all it wanted, so this is not a failure. stdout is pointed at /dev/null so the interpreter's
    final flush does not raise again."""
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _take_debug(list(sys.argv[1:] if argv is None else argv))
    console = sys.modules.get("medrelease.core.console")  # not imported yet: nothing to forget
    if console is not None:  # an earlier main() in this process (a library user, tests)
        console.interrupted_activity()  # its unread interrupt is not this run's
    as_json = "--json" in args
    if not _debug():
        # Libraries' own tqdm bars would interleave with our progress display; this must be
        # set before tqdm is first imported (it reads the variable once).
        os.environ.setdefault("TQDM_DISABLE", "1")
    try:
        result = app(args=args, prog_name="medrelease", standalone_mode=False)
        if result == 130:  # typer turns Ctrl-C (KeyboardInterrupt) into exit code 130
            return _interrupted(args)
        return int(result) if isinstance(result, int) else 0
    except MedreleaseError as err:
        if _debug():
            raise
        _report(err, as_json)
        return err.exit_code
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:  # end of input at a prompt (Ctrl-C comes back as 130 above)
        return 130
    except click_exc.ClickException as exc:
        from medrelease.core.errors import UsageError

        hint = "see `medrelease --help` or `medrelease COMMAND --help`"
        _report(UsageError(exc.format_message(), hint=hint), as_json)
        return 2
    except KeyboardInterrupt:
        return _interrupted(args)
    except Exception as exc:
        if isinstance(exc, BrokenPipeError) and _is_stdout_closed(exc):
            return _stdout_closed()
        if _debug():
            raise
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            from medrelease.core.errors import EnvironmentProblem

            full = EnvironmentProblem(
                f"the disk is full: No space left on device ({exc.filename or 'while writing'})",
                hint="free disk space or pass --workdir on a larger disk; partial files were "
                "not moved into place",
            )
            _report(full, as_json)
            return full.exit_code
        from medrelease.core.errors import MedreleaseError as _E

        _report(
            _E(
                f"internal error: {type(exc).__name__}: {exc}",
                hint="re-run with --debug for the traceback and report it",
            ),
            as_json,
        )
        return 1


def run() -> None:  # console-script entry point
    code = main()
    # The process ends here: skip the interpreter's final collection over every torch and
    # transformers object (~1.8 s after a merge or quantize); artifacts are already written.
    import gc

    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    run()

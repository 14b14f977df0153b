"""`medrelease hub-server --root DIR --port N`: a local Hub-API server on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import typer

SUMMARY = "Serve a Hub-compatible API on 127.0.0.1 (offline use)."
EXAMPLES = (
    "medrelease hub-server --root ./hub --port 8765",
    "HF_ENDPOINT=http://127.0.0.1:8765 medrelease publish merges/med-advisor-4b.yaml",
)
RootOpt = typer.Option(..., "--root", metavar="DIR", help="folder holding the server's repos")
TokenFileOpt = typer.Option(
    None,
    "--token-file",
    metavar="FILE",
    help="accepted tokens, one 'TOKEN USER' per line (default: any token is accepted)",
)


def register(app: typer.Typer) -> None:
    @app.command("hub-server")
    def hub_server(
        root: Path = RootOpt,
        port: int = typer.Option(
            8765, "--port", metavar="PORT", help="port on 127.0.0.1 (0 = any free port)"
        ),
        token_file: Path = TokenFileOpt,
    ) -> None:
        """Serve a Hub-compatible API on 127.0.0.1 for offline publishing and downloads.

        Point clients at it with HF_ENDPOINT=http://127.0.0.1:PORT (and unset HF_HUB_OFFLINE).
        """
        import threading

        from medrelease.core.errors import UsageError
        from medrelease.localhub import serve

        tokens = None
        if token_file is not None:
            try:
                lines = token_file.read_text().splitlines()
            except OSError as exc:
                raise UsageError(f"cannot read --token-file {token_file}: {exc}") from None
            tokens = {}
            for n, line in enumerate(lines, start=1):
                parts = line.split()
                if not parts or line.lstrip().startswith("#"):
                    continue
                if len(parts) != 2:
                    raise UsageError("expected 'TOKEN USER'", where=f"{token_file}:{n}")
                tokens[parts[0]] = parts[1]
        try:
            hub = serve(root, port=port, tokens=tokens)
        except OSError as exc:
            raise UsageError(
                f"cannot listen on 127.0.0.1:{port}: {exc.strerror}",
                hint="choose another --port (0 picks a free one)",
            ) from None
        typer.echo(f"local Hub serving {root} at {hub.url}  (Ctrl-C to stop)")
        typer.echo(f"  export HF_ENDPOINT={hub.url}")
        try:
            threading.Event().wait()
        finally:
            hub.stop()

"""`medrelease setup`: install the offline data the tools need (run by `make install`)."""

from __future__ import annotations

import typer

SUMMARY = "Install the offline data and llama.cpp tools (once)."
EXAMPLES = ("medrelease setup", "medrelease setup --quiet   # print only problems (CI)")


def register(app: typer.Typer) -> None:
    @app.command()
    def setup(quiet: bool = typer.Option(False, "--quiet", help="print only problems")) -> None:
        """Install offline data and tools once: IFEval's NLTK data, and llama.cpp's imatrix and
        quantize tools unless llama-cpp-python was built with them (as `make install` does)."""
        from medrelease.setup_offline import prepare_offline_data

        for line in prepare_offline_data():
            if not quiet:
                typer.echo(line)

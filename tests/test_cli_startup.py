"""The CLI must start fast: importing it (and --help) never imports torch."""

from __future__ import annotations

import subprocess
import sys


def test_import_cli_does_not_import_torch():
    code = (
        "import sys, medrelease.cli\n"
        "heavy = [m for m in ('torch', 'transformers', 'mergekit', 'lm_eval', 'llama_cpp', 'ray') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"imported at start-up: {out.stdout.strip()}"


def test_help_lists_commands_and_exit_codes():
    out = subprocess.run(
        [sys.executable, "-m", "medrelease.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    for cmd in ("merge", "validate"):
        assert cmd in out.stdout
    assert "Exit codes" in out.stdout


def test_unknown_command_is_usage_error_without_traceback():
    out = subprocess.run(
        [sys.executable, "-m", "medrelease.cli", "mrege", "x.yaml"], capture_output=True, text=True
    )
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "error:" in out.stderr


def test_version_flag():
    out = subprocess.run(
        [sys.executable, "-m", "medrelease.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0
    assert out.stdout.startswith("medrelease ")


def test_help_imports_nothing_heavy():
    """`medrelease --help` has a 0.3 s budget (bench/): no torch, and none of the modules that
    doubled it before (typer's rich help: rich.markdown, markdown-it, pygments;
    importlib.metadata for the version)."""
    code = (
        "import contextlib, io, sys\n"
        "from medrelease.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'Commands:' in out.getvalue(), out.getvalue()\n"
        "heavy = ('torch', 'transformers', 'rich.markdown', 'markdown_it', 'pygments',\n"
        "         'importlib.metadata')\n"
        "print(','.join(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"imported by --help: {out.stdout.strip()}"


def test_version_is_the_installed_distribution_version():
    from importlib.metadata import version

    import medrelease

    assert version("medrelease") == medrelease.__version__

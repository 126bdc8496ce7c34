"""How every Ruaft console script runs its typer app: errors are one line, never a traceback.

Typer (with rich installed) draws usage errors in a multi-line box. Operators read these in
terminals and scripts grep them, so every script reports a usage error, or a cluster file it
cannot use, as one line `PROG: error: MESSAGE (see PROG --help)` and exits 2, like the
errors the commands raise themselves.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer

from kv.clusterfile import ClusterFileError

USAGE_EXIT = 2
"""Exit status for bad usage and unusable cluster files (as click and argparse use)."""


def run_app(app: typer.Typer, prog: str) -> NoReturn:
    """Run `app` with the process's arguments and exit with its status.

    Usage errors (unknown command or option, missing or invalid argument) and a
    `ClusterFileError` raised anywhere in a command print one line on stderr and exit 2;
    `--help` and a bare invocation of an app with `no_args_is_help` print the help. Any
    other exception propagates (a bug: its traceback is what a maintainer needs).
    """
    try:
        result = app(standalone_mode=False, prog_name=prog)
    except typer.TyperException as exc:  # typer's own click: usage and parameter errors
        context = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and context is not None:
            typer.echo(context.get_help(), err=True)
            sys.exit(USAGE_EXIT)
        message = " ".join(exc.format_message().split())
        hint = f" (see {context.command_path} --help)" if context is not None else ""
        typer.echo(f"{prog}: error: {message}{hint}", err=True)
        sys.exit(getattr(exc, "exit_code", USAGE_EXIT))
    except typer.Abort:
        typer.echo(f"{prog}: aborted", err=True)
        sys.exit(1)
    except ClusterFileError as exc:  # e.g. a key file met mid-command
        typer.echo(f"{prog}: {exc}", err=True)
        sys.exit(USAGE_EXIT)
    # standalone_mode=False hands back typer.Exit's code (or the command's return value).
    sys.exit(result if isinstance(result, int) else 0)

"""`ruaft-kv`: put, append and get from the command line.

    ruaft-kv put KEY VALUE      ruaft-kv append KEY VALUE      ruaft-kv get KEY

The cluster file is `./ruaft-data/cluster.json` unless `--cluster` says otherwise. `get`
prints the value alone, so scripts can use it. Exit status: 0 done; 2 bad usage or an
unreadable cluster file; 3 no leader answered in time (definite: nothing was done);
4 outcome unknown (indefinite: a write may or may not have happened).
"""

from __future__ import annotations

from typing import Callable, TypeVar

import typer

from kv.client import BadRequestError, DefiniteError, IndefiniteError, KVClient
from kv.clusterfile import ClusterFileError, load

EXIT_USAGE = 2
EXIT_NO_LEADER = 3
EXIT_UNKNOWN = 4

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
T = TypeVar("T")

state: dict[str, object] = {"cluster": "ruaft-data", "timeout": 10.0}


@app.callback()
def options(
    cluster: str = typer.Option("ruaft-data", "--cluster", "-c",
                                help="cluster file, or the folder holding cluster.json"),
    timeout: float = typer.Option(10.0, "--timeout", "-t", min=0.1,
                                  help="seconds to keep trying before giving up"),
) -> None:
    """Talk to a Ruaft KV cluster."""
    state["cluster"] = cluster
    state["timeout"] = timeout


def _run(action: Callable[[KVClient], T]) -> T:
    try:
        spec = load(str(state["cluster"]))
    except ClusterFileError as exc:
        typer.echo(f"ruaft-kv: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE)
    client = KVClient(spec.client_addresses(), timeout=float(state["timeout"]))  # type: ignore[arg-type]
    try:
        return action(client)
    except BadRequestError as exc:
        typer.echo(f"ruaft-kv: refused: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE)
    except DefiniteError as exc:
        typer.echo(f"ruaft-kv: {exc}", err=True)
        raise typer.Exit(EXIT_NO_LEADER)
    except IndefiniteError as exc:
        typer.echo(f"ruaft-kv: {exc}", err=True)
        raise typer.Exit(EXIT_UNKNOWN)
    finally:
        client.close()


@app.command()
def put(key: str, value: str) -> None:
    """Set KEY to VALUE."""
    _run(lambda c: c.put(key, value))


@app.command()
def append(key: str, value: str) -> None:
    """Append VALUE to KEY's value (a missing key counts as empty)."""
    _run(lambda c: c.append(key, value))


@app.command()
def get(key: str) -> None:
    """Print KEY's value (empty for a missing key), linearizably."""
    typer.echo(_run(lambda c: c.get(key)))


def run() -> None:
    app()

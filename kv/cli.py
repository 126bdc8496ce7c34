"""`ruaft-kv`: put, append and get from the command line.

    ruaft-kv put KEY VALUE      ruaft-kv append KEY VALUE      ruaft-kv get KEY

The cluster file is `./ruaft-data/cluster.json` unless `--cluster` says otherwise. `get`
prints the value alone, so scripts can use it. Exit status: 0 done; 2 bad usage or an
unreadable cluster file; 3 no leader answered in time (definite: nothing was done);
4 outcome unknown (indefinite: a write may or may not have happened).

In a keyed cluster the client connects with the key pair the cluster file names
(`auth.client_key_file`), or the one given with `--key FILE`.
"""

from __future__ import annotations

from typing import Callable, Optional, TypeVar

import typer

from kv.client import BadRequestError, DefiniteError, IndefiniteError, KVClient
from kv.cli_runner import run_app
from kv.clusterfile import ClusterFileError, load

EXIT_USAGE = 2
EXIT_NO_LEADER = 3
EXIT_UNKNOWN = 4

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
T = TypeVar("T")

state: dict[str, object] = {"cluster": "ruaft-data", "timeout": 10.0, "key": None}


@app.callback()
def options(
    cluster: str = typer.Option("ruaft-data", "--cluster", "-c",
                                help="cluster file, or the folder holding cluster.json"),
    timeout: float = typer.Option(10.0, "--timeout", "-t", min=0.1,
                                  help="seconds to keep trying before giving up"),
    key: Optional[str] = typer.Option(None, "--key", "-k",
                                      help="secret key file (keyed cluster; default: the "
                                           "cluster file's client_key_file)"),
) -> None:
    """Talk to a Ruaft KV cluster."""
    state["cluster"] = cluster
    state["timeout"] = timeout
    state["key"] = key


def _run(action: Callable[[KVClient], T]) -> T:
    try:
        spec = load(str(state["cluster"]))
        key_file = state["key"]
        if key_file is not None and not spec.keyed:
            raise ClusterFileError(f"--key given, but the cluster in {spec.path} has no keys")
        key_pair = spec.user_key_pair("client", key_file)  # type: ignore[arg-type]
    except ClusterFileError as exc:
        typer.echo(f"ruaft-kv: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE)
    client = KVClient(spec.client_addresses(), timeout=float(state["timeout"]),  # type: ignore[arg-type]
                      key_pair=key_pair, server_keys=spec.server_keys())
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
    """The `ruaft-kv` console script."""
    run_app(app, "ruaft-kv")

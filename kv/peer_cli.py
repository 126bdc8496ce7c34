"""`ruaft-peer --cluster FILE --id N`: start one KV peer from a cluster file.

This is how a cluster spans several machines: copy the same cluster file to each host and
start each peer there. The peer binds the file's `raft_bind`/`client_bind` addresses and
serves the control endpoint only if the file gives it a `control_address`. If the file has
keys (format 2 "auth"), the peer reads its secret key file and admits only the file's keys:
peers on the Raft port, clients and operators on the client port, operators on the control
port.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Optional

import typer

from kv.cli_runner import run_app
from kv.clusterfile import ClusterFileError, load
from kv.server import KVServerConfig, run_server

app = typer.Typer(add_completion=False, help=__doc__)


def config_from_file(cluster: str, peer_id: int) -> KVServerConfig:
    """The server configuration of peer `peer_id` in the cluster file `cluster`."""
    spec = load(cluster)
    me = spec.peer(peer_id)
    # The transport binds addresses[me] and connects to everyone else's advertised address.
    raft_addresses = {p.id: p.raft_address for p in spec.peers}
    raft_addresses[me.id] = me.raft_bind
    auth = spec.auth
    return KVServerConfig(
        me=me.id, raft_addresses=raft_addresses, client_address=me.client_bind,
        data_dir=spec.data_dir(me.id), cluster_id=spec.cluster_id,
        max_raft_state=spec.maxraftstate, control_address=me.control_address,
        tick_seconds=spec.tick_ms / 1000.0,
        key_pair=spec.peer_key_pair(me.id),
        peer_keys=spec.peer_public_keys() or None,
        client_keys=frozenset(k.encode() for k in auth.client_keys) if auth else frozenset(),
        operator_keys=frozenset(k.encode() for k in auth.operator_keys) if auth else frozenset(),
    )


@app.command()
def main(
    cluster: str = typer.Option(..., "--cluster", help="the cluster file (or its folder)"),
    peer_id: int = typer.Option(..., "--id", help="which peer of the file to run"),
    verbose: bool = typer.Option(False, "--verbose", help="debug logging (or RUAFT_LOG=DEBUG)"),
) -> None:
    """Run one KV peer described by a cluster file until SIGTERM or Ctrl-C."""
    try:
        config = config_from_file(cluster, peer_id)
    except ClusterFileError as exc:
        typer.echo(f"ruaft-peer: {exc}", err=True)
        raise typer.Exit(2)
    code = run_server(config, verbose)
    logging.shutdown()
    sys.stdout.flush()
    os._exit(code)


def run() -> None:
    """The `ruaft-peer` console script."""
    run_app(app, "ruaft-peer")


if __name__ == "__main__":
    run()

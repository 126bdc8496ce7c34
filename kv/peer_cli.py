"""`ruaft-peer --cluster FILE --id N`: start one KV peer from a cluster file.

This is how a cluster spans several machines: copy the same cluster file to each host and
start each peer there. The peer binds the file's `raft_bind`/`client_bind` addresses and
serves the control endpoint only if the file gives it a `control_address`. If the file has
keys (format 2 "auth"), the peer reads its secret key file and admits only the file's keys:
peers on the Raft port, clients and operators on the client port, operators on the control
port.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn

from kv.clusterfile import ClusterFileError, load
from kv.server import KVServerConfig, run_server

PROG = "ruaft-peer"
USAGE_EXIT = 2
"""Exit status for bad arguments and unusable cluster files (as `kv.cli_runner.USAGE_EXIT`)."""


class _Parser(argparse.ArgumentParser):
    """argparse, not Typer, for the peer process: Typer's parameter handling loads pydantic,
    which costs every peer ~14 MB of memory and 0.2-0.3 s of start-up (docs/PERFORMANCE.md).
    Errors keep the one-line shape of the other scripts (`kv.cli_runner`)."""

    def error(self, message: str) -> NoReturn:
        print(f"{PROG}: error: {message} (see {PROG} --help)", file=sys.stderr)
        sys.exit(USAGE_EXIT)


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


def main(argv: list[str] | None = None) -> int:
    """Run one KV peer described by a cluster file until SIGTERM or Ctrl-C; returns the exit
    status (2: bad arguments or an unusable cluster file)."""
    parser = _Parser(prog=PROG, description=__doc__,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cluster", required=True, help="the cluster file (or its folder)")
    parser.add_argument("--id", type=int, required=True, dest="peer_id",
                        help="which peer of the file to run")
    parser.add_argument("--verbose", action="store_true", help="debug logging (or RUAFT_LOG=DEBUG)")
    args = parser.parse_args(argv)
    try:
        config = config_from_file(args.cluster, args.peer_id)
    except ClusterFileError as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return USAGE_EXIT
    return run_server(config, args.verbose)


def run() -> None:
    """The `ruaft-peer` console script."""
    code = main()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()

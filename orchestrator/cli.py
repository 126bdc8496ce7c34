"""`ruaft-cluster`: bring up, inspect, break and tear down a local Ruaft KV cluster.

Every command takes `--data-dir DIR` (default `./ruaft-data`), the folder holding the
cluster file and the peers' data; stay in one folder and you never type it.

`up` starts a playground (control endpoint on: partition/heal work; no keys). `up --secure`
adds CURVE keys; `up --production` has keys and no control endpoint. `keys` adds (or
replaces) the keys of an existing, stopped cluster.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import List, Optional

import typer

from kv.cli_runner import run_app
from kv.clusterfile import CLUSTER_FILE_NAME, ClusterFileError
from orchestrator.local import KEYS_DIR, LocalCluster, PeerStatus, add_keys, new_spec

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)

DATA_DIR_OPTION = typer.Option(Path("ruaft-data"), "--data-dir", "-d",
                               help="folder with the cluster file and the peers' data")


def fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"ruaft-cluster: {message}", err=True)
    return typer.Exit(code)


def open_cluster(data_dir: Path) -> LocalCluster:
    try:
        return LocalCluster.open(data_dir)
    except ClusterFileError as exc:
        raise fail(str(exc), 2)


def need_control(cluster: LocalCluster, command: str) -> None:
    if not cluster.has_control:
        raise fail(f"{command}: the control endpoint is off in this cluster (a production start); "
                   "fault injection needs a playground from `ruaft-cluster up`", 2)


def check_peer(cluster: LocalCluster, peer_id: int) -> None:
    if peer_id not in cluster.ids:
        raise fail(f"no peer {peer_id} in this cluster (ids {cluster.ids[0]}..{cluster.ids[-1]})", 2)


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def format_table(rows: list[PeerStatus]) -> str:
    headers = ["id", "pid", "alive", "role", "term", "commit", "applied", "last", "snapshot",
               "state_bytes", "address"]
    table = [[_cell(r.id), _cell(r.pid), "yes" if r.alive else "no", _cell(r.role), _cell(r.term),
              _cell(r.commit_index), _cell(r.applied_index), _cell(r.last_index),
              _cell(r.snapshot_index), _cell(r.state_bytes), r.address] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in table]
    return "\n".join(lines)


@app.command()
def up(
    n: int = typer.Option(5, "-n", "--nodes", min=1, max=99, help="number of peers (new cluster)"),
    data_dir: Path = DATA_DIR_OPTION,
    host: str = typer.Option("127.0.0.1", "--host", help="address the peers bind and advertise"),
    base_port: Optional[int] = typer.Option(None, "--base-port",
                                            help="raft ports from here, client +100, control +200"),
    maxraftstate: int = typer.Option(1 << 20, "--maxraftstate", min=1,
                                     help="Raft state bytes before a snapshot"),
    foreground: bool = typer.Option(False, "--foreground", help="live status; Ctrl-C stops all"),
    timeout: float = typer.Option(30.0, "--timeout", help="seconds to wait for a leader"),
    secure: bool = typer.Option(False, "--secure",
                                help="new cluster with CURVE keys (every port admits known keys only)"),
    production: bool = typer.Option(False, "--production",
                                    help="new cluster with keys and NO control endpoint "
                                         "(no partition/heal)"),
) -> None:
    """Start a cluster (or restart the stopped peers of an existing one) and wait for a leader."""
    cluster_file = data_dir / CLUSTER_FILE_NAME
    if cluster_file.exists():
        cluster = open_cluster(data_dir)
        if (secure or production) and not cluster.spec.keyed:
            raise fail(f"the cluster in {data_dir} exists without keys; --secure/--production "
                       "only shape a new cluster (add keys with `ruaft-cluster keys`)", 2)
        if production and cluster.has_control:
            raise fail(f"the cluster in {data_dir} exists with a control endpoint; "
                       "--production only shapes a new cluster", 2)
        typer.echo(f"restarting stopped peers of the cluster in {data_dir}")
    else:
        try:
            spec = new_spec(n, data_dir, host, base_port, maxraftstate, control=not production)
            if secure or production:
                spec.write(cluster_file)  # creates the folder, owner-only, before the keys
                spec = add_keys(spec)
        except (ValueError, OSError) as exc:
            raise fail(str(exc), 2)
        spec.write(cluster_file)
        cluster = LocalCluster(spec)
        kind = ("production (keys, no control endpoint)" if production
                else "keyed playground" if secure else "playground")
        typer.echo(f"new {n}-peer {kind} cluster in {data_dir}")
    for peer_id in cluster.ids:
        cluster.start(peer_id)
    leader = cluster.wait_leader(timeout)
    typer.echo(format_table(cluster.status()))
    if leader is None:
        raise fail(f"no leader elected within {timeout:.0f}s; see {data_dir}/peer-*/peer.log")
    typer.echo(f"\nleader: peer {leader}. Try:\n  ruaft-kv --cluster {data_dir} put hello world\n"
               f"  ruaft-kv --cluster {data_dir} get hello")
    if cluster.spec.keyed:
        typer.echo(f"(keyed: secret keys in {data_dir}/{KEYS_DIR}/, readable by you only)")
    if foreground:
        watch(cluster)


def watch(cluster: LocalCluster) -> None:
    """Redraw the status table every second until Ctrl-C, then stop the cluster."""
    try:
        while True:
            sys.stdout.write("\x1b[2J\x1b[H" + format_table(cluster.status())
                             + "\n\nCtrl-C stops the cluster.\n")
            sys.stdout.flush()
            time.sleep(1.0)
    except KeyboardInterrupt:
        typer.echo("\nstopping…")
        for peer_id in cluster.ids:
            cluster.stop(peer_id)
        typer.echo("stopped.")


@app.command()
def keys(
    data_dir: Path = DATA_DIR_OPTION,
    clients: int = typer.Option(1, "--clients", min=1, max=1000, help="client key pairs to make"),
    replace: bool = typer.Option(False, "--replace", help="replace the keys the cluster already has"),
) -> None:
    """Generate CURVE key pairs for a stopped cluster: one per peer, client(s) and an
    operator, into DATA_DIR/keys (0700, files 0600), and record the public keys in the
    cluster file. From the next start every port admits only these keys."""
    cluster = open_cluster(data_dir)
    running = [peer_id for peer_id in cluster.ids if cluster.pid(peer_id) is not None]
    if running:
        raise fail(f"peers {running} are running; stop the cluster first (`ruaft-cluster down`)", 2)
    if cluster.spec.keyed and not replace:
        raise fail(f"the cluster in {data_dir} already has keys (--replace makes new ones)", 2)
    try:
        spec = add_keys(cluster.spec, clients)
        assert spec.path is not None
        spec.write(spec.path)
    except (ValueError, OSError) as exc:
        raise fail(str(exc), 2)
    typer.echo(f"keys for {len(spec.peers)} peers, {clients} client(s) and an operator in "
               f"{data_dir}/{KEYS_DIR}; public keys recorded in {spec.path}")


@app.command()
def status(
    data_dir: Path = DATA_DIR_OPTION,
    as_json: bool = typer.Option(False, "--json", help="print a JSON list instead of a table"),
) -> None:
    """One row per peer: pid, liveness, role, term and indexes."""
    rows = open_cluster(data_dir).status()
    if as_json:
        typer.echo(json.dumps([asdict(r) for r in rows], indent=2))
    else:
        typer.echo(format_table(rows))


@app.command()
def kill(peer_id: int = typer.Argument(..., metavar="ID"), data_dir: Path = DATA_DIR_OPTION) -> None:
    """SIGKILL peer ID (its data stays; `restart ID` brings it back)."""
    cluster = open_cluster(data_dir)
    check_peer(cluster, peer_id)
    if not cluster.stop(peer_id, signal.SIGKILL):
        raise fail(f"peer {peer_id} is not running")
    typer.echo(f"killed peer {peer_id}")


@app.command()
def stop(peer_id: int = typer.Argument(..., metavar="ID"), data_dir: Path = DATA_DIR_OPTION) -> None:
    """SIGTERM peer ID: a graceful stop."""
    cluster = open_cluster(data_dir)
    check_peer(cluster, peer_id)
    if not cluster.stop(peer_id, signal.SIGTERM):
        raise fail(f"peer {peer_id} is not running")
    typer.echo(f"stopped peer {peer_id}")


@app.command()
def restart(peer_id: int = typer.Argument(..., metavar="ID"), data_dir: Path = DATA_DIR_OPTION) -> None:
    """Stop peer ID if it runs, then start it again on its data."""
    cluster = open_cluster(data_dir)
    check_peer(cluster, peer_id)
    cluster.stop(peer_id, signal.SIGTERM)
    pid = cluster.start(peer_id)
    typer.echo(f"restarted peer {peer_id} (pid {pid})")


def parse_groups(groups: List[str]) -> list[list[int]]:
    parsed = []
    for group in groups:
        try:
            parsed.append([int(x) for x in group.split(",") if x != ""])
        except ValueError:
            raise fail(f"bad group {group!r}: want comma-separated peer ids like 0,1", 2)
    return parsed


@app.command()
def partition(
    groups: List[str] = typer.Argument(..., help="groups of peers that can talk, e.g. 0,1 2,3,4"),
    data_dir: Path = DATA_DIR_OPTION,
) -> None:
    """Cut the network so that peers talk only within their group."""
    cluster = open_cluster(data_dir)
    need_control(cluster, "partition")
    try:
        missed = cluster.partition(parse_groups(groups))
    except ValueError as exc:
        raise fail(str(exc), 2)
    typer.echo("partitioned: " + " | ".join(groups))
    if missed:
        typer.echo(f"(peers {missed} are not running; they were not told)")


@app.command()
def heal(data_dir: Path = DATA_DIR_OPTION) -> None:
    """Restore every link."""
    cluster = open_cluster(data_dir)
    need_control(cluster, "heal")
    missed = cluster.heal()
    typer.echo("healed" + (f" (peers {missed} are not running)" if missed else ""))


@app.command()
def down(
    data_dir: Path = DATA_DIR_OPTION,
    purge: bool = typer.Option(False, "--purge", help="also delete the data dir"),
) -> None:
    """Stop every peer (SIGTERM, then SIGKILL after 10 s); with --purge delete all data."""
    cluster = open_cluster(data_dir)
    stopped = [peer_id for peer_id in cluster.ids if cluster.stop(peer_id)]
    typer.echo(f"stopped peers {stopped}" if stopped else "no peer was running")
    if purge:
        shutil.rmtree(data_dir)
        typer.echo(f"deleted {data_dir}")


@app.command()
def chaos(
    nodes: int = typer.Option(5, "--nodes", "-n", min=1, max=15, help="peers in the fresh cluster"),
    duration: float = typer.Option(60.0, "--duration", min=1.0, help="seconds of faults and traffic"),
    clients: int = typer.Option(8, "--clients", min=1, max=64, help="concurrent client threads"),
    nemesis: str = typer.Option("kill,partition,lossy,pause", "--nemesis",
                                help="comma-separated faults: kill,partition,lossy,pause (or none)"),
    seed: Optional[int] = typer.Option(None, "--seed", help="seeds the nemesis schedule and the clients"),
    out: Optional[Path] = typer.Option(None, "--out",
                                       help="run directory (default runs/chaos-<timestamp>-<seed>)"),
    keys: int = typer.Option(6, "--keys", min=2, help="size of the key set"),
    op_timeout: float = typer.Option(3.0, "--op-timeout", min=0.1, help="seconds per client call"),
    check_timeout: Optional[float] = typer.Option(
        None, "--check-timeout", min=0.1,
        help="time budget of the linearizability checker, seconds [default: max(120, 2 × duration)]"),
    allow_unknown: bool = typer.Option(False, "--allow-unknown",
                                       help="exit 0 even if the checker's verdict is UNKNOWN"),
    maxraftstate: int = typer.Option(64 << 10, "--maxraftstate", min=1,
                                     help="Raft state bytes before a snapshot"),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="progress bar on stderr"),
) -> None:
    """Torture a fresh local cluster with a seeded nemesis while clients record a history,
    then check linearizability and durability. Exit 0 clean, 1 violation (UNKNOWN counts
    unless --allow-unknown), 2 bad usage, 3 the run could not start."""
    from orchestrator import chaos as chaos_mod  # here: the other commands stay quick to start

    if seed is None:
        seed = secrets.randbelow(1 << 31)
    try:
        options = chaos_mod.ChaosOptions(
            nodes=nodes, duration=duration, clients=clients, nemesis=chaos_mod.parse_nemesis(nemesis),
            seed=seed, out=out if out is not None else chaos_mod.default_run_dir(seed), keys=keys,
            op_timeout=op_timeout, allow_unknown=allow_unknown,
            check_timeout=check_timeout if check_timeout is not None else max(120.0, 2 * duration),
            maxraftstate=maxraftstate)
        options.validate()
        verdict, code = chaos_mod.run_chaos(options, show_progress=progress)
    except chaos_mod.ChaosError as exc:
        raise fail(str(exc), 2)
    except KeyboardInterrupt:
        raise fail("interrupted; every peer was stopped", 130)
    if verdict is None:
        raise fail(f"the run could not be carried out; see {options.out}", code)
    typer.echo(chaos_mod.describe_verdict(verdict, options.out))
    raise typer.Exit(code)


@app.command()
def check(
    run_dir: Path = typer.Argument(..., metavar="DIR", help="a chaos run directory"),
    check_timeout: Optional[float] = typer.Option(None, "--check-timeout", min=0.0,
                                                  help="checker budget, seconds (default: the run's)"),
    allow_unknown: Optional[bool] = typer.Option(None, "--allow-unknown/--no-allow-unknown",
                                                 help="whether UNKNOWN passes (default: the run's)"),
) -> None:
    """Re-check a saved chaos run from its history and final reads; rewrites verdict.json and
    timeline.html. Exit 0 clean, 1 violation, 2 not a run directory."""
    from orchestrator import chaos as chaos_mod

    try:
        verdict, code = chaos_mod.check_run(run_dir, check_timeout, allow_unknown)
    except chaos_mod.ChaosError as exc:
        raise fail(str(exc), 2)
    typer.echo(chaos_mod.describe_verdict(verdict, run_dir))
    raise typer.Exit(code)


BENCH_SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "bench.py"


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True,
                               "help_option_names": []})
def bench(ctx: typer.Context) -> None:
    """Benchmark durable KV and library throughput/latency, failover, restart and memory,
    optionally against PySyncObj and etcd (all options: ruaft-cluster bench --help)."""
    import subprocess

    if not BENCH_SCRIPT.exists():
        raise fail(f"the benchmark lives in the source tree ({BENCH_SCRIPT} not found); "
                   "install from a checkout with `pip install -e '.[bench]'`", 2)
    raise typer.Exit(subprocess.call([sys.executable, str(BENCH_SCRIPT), *ctx.args]))


def run() -> None:
    """The `ruaft-cluster` console script."""
    run_app(app, "ruaft-cluster")

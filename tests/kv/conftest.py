"""Fixtures for the ported KV suite (TESTS.md §3): real KV server processes, clients in the
test process, every process reaped whatever happens."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from orchestrator.kvcluster import KVCluster


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    clusters: list[KVCluster] = getattr(item, "_ruaft_kv_clusters", [])
    if report.failed and clusters:
        paths = [str(p) for c in clusters for p in c.log_files()]
        paths += [str(p) for c in clusters for p in sorted(c.base_dir.glob("*.html"))]
        report.sections.append(("peer logs", "\n".join(paths)))


@pytest.fixture
def make_kv_cluster(request: pytest.FixtureRequest,
                    tmp_path: Path) -> Iterator[Callable[..., KVCluster]]:
    """`make_kv_cluster(n, unreliable=False, maxraftstate=None)`; every cluster made is
    cleaned up at teardown (clients closed, servers killed and reaped), and a server that
    reported an error or died on its own fails the test there."""
    clusters: list[KVCluster] = []
    request.node._ruaft_kv_clusters = clusters

    def make(n: int, unreliable: bool = False, maxraftstate: int | None = None) -> KVCluster:
        cluster = KVCluster(n, unreliable, maxraftstate,
                            base_dir=tmp_path / f"cluster-{len(clusters)}")
        clusters.append(cluster)
        return cluster

    yield make
    failures = []
    for cluster in clusters:
        try:
            cluster.cleanup(check=True)
        except AssertionError as exc:
            failures.append(str(exc))
    if failures:
        pytest.fail("\n".join(failures))

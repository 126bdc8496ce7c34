"""Fixtures for the ported Raft suite: real peer processes, reaped whatever happens."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from orchestrator.cluster import Cluster


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    clusters: list[Cluster] = getattr(item, "_ruaft_clusters", [])
    if report.failed and clusters:
        paths = "\n".join(str(p) for c in clusters for p in c.log_files())
        report.sections.append(("peer logs", paths))


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """`make_cluster(n, unreliable=False, snapshot=False)`; every cluster made is cleaned up
    at teardown, and a peer that reported an error fails the test there."""
    clusters: list[Cluster] = []
    request.node._ruaft_clusters = clusters

    def make(n: int, unreliable: bool = False, snapshot: bool = False) -> Cluster:
        cluster = Cluster(n, unreliable, snapshot, base_dir=tmp_path / f"cluster-{len(clusters)}")
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

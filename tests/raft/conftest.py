"""Fixtures for the ported Raft suite: real peer processes, reaped whatever happens.

Every test draws its random choices from `rng`, a `random.Random` seeded per test; the seed
is printed (and shown with the peer logs when the test fails). Replay a run with
``RUAFT_TEST_SEED=<seed> pytest tests/raft -k <test>``; the peers' own randomness (election
timeouts, the fault injector) is seeded from the same seed.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Callable, Iterator

import pytest

from orchestrator.cluster import Cluster


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    seed = getattr(item, "_ruaft_seed", None)
    if report.failed and seed is not None:
        report.sections.append(("seed", f"RUAFT_TEST_SEED={seed}"))
    clusters: list[Cluster] = getattr(item, "_ruaft_clusters", [])
    if report.failed and clusters:
        paths = "\n".join(str(p) for c in clusters for p in c.log_files())
        report.sections.append(("peer logs", paths))


@pytest.fixture
def seed(request: pytest.FixtureRequest) -> int:
    """This test's seed: RUAFT_TEST_SEED if set, else fresh; printed for replay."""
    env = os.environ.get("RUAFT_TEST_SEED")
    value = int(env) if env else random.SystemRandom().randrange(1 << 32)
    request.node._ruaft_seed = value
    print(f"seed: RUAFT_TEST_SEED={value}")
    return value


@pytest.fixture
def rng(seed: int) -> random.Random:
    """The test's random choices (seeded, see `seed`)."""
    return random.Random(seed)


@pytest.fixture
def make_cluster(request: pytest.FixtureRequest, tmp_path: Path,
                 seed: int) -> Iterator[Callable[..., Cluster]]:
    """`make_cluster(n, unreliable=False, snapshot=False)`; every cluster made is cleaned up
    at teardown, and a peer that reported an error fails the test there."""
    clusters: list[Cluster] = []
    request.node._ruaft_clusters = clusters

    def make(n: int, unreliable: bool = False, snapshot: bool = False) -> Cluster:
        cluster = Cluster(n, unreliable, snapshot, base_dir=tmp_path / f"cluster-{len(clusters)}",
                          seed=seed + len(clusters))
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

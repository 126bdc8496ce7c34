"""Options of the simulation tier (local to tests/sim).

How many seeds `test_simulation.py` sweeps: 500 by default; more with ``--sim-seeds N``
(honoured when pytest is pointed at this folder, e.g. ``pytest tests/sim --sim-seeds 5000``,
since pytest reads a sub-folder's options only when it starts there) or, from anywhere, the
environment variable ``RUAFT_SIM_SEEDS=N``. ``RUAFT_SIM_FIRST_SEED`` moves the window
(default 0), and ``RUAFT_SIM_LONG=1`` draws longer faulty phases (1000–3000 ticks) for soaks.
"""

from __future__ import annotations

import os

import pytest

DEFAULT_SEEDS = 500
CHUNK = 25
"""Seeds per test item: small enough that a chunk takes seconds, so a failure is reported
early and each item stays far below the per-test timeout."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ruaft simulation")
    group.addoption(
        "--sim-seeds",
        type=int,
        default=None,
        help=f"number of simulation seeds to sweep (default {DEFAULT_SEEDS}, "
        "or the RUAFT_SIM_SEEDS environment variable)",
    )


def sim_seed_count(config: pytest.Config) -> int:
    option = config.getoption("--sim-seeds", default=None)
    if option is not None:
        return int(option)
    return int(os.environ.get("RUAFT_SIM_SEEDS", DEFAULT_SEEDS))


def sim_first_seed() -> int:
    return int(os.environ.get("RUAFT_SIM_FIRST_SEED", "0"))


def sim_faulty_range() -> tuple[int, int]:
    from ruaft.testing.sim import DEFAULT_FAULTY_RANGE

    return (1000, 3000) if os.environ.get("RUAFT_SIM_LONG") == "1" else DEFAULT_FAULTY_RANGE


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize `seed_chunk` with consecutive ranges of CHUNK seeds."""
    if "seed_chunk" not in metafunc.fixturenames:
        return
    first = sim_first_seed()
    count = sim_seed_count(metafunc.config)
    chunks = [
        range(start, min(start + CHUNK, first + count))
        for start in range(first, first + count, CHUNK)
    ]
    metafunc.parametrize(
        "seed_chunk", chunks, ids=[f"seeds{c.start}-{c.stop - 1}" for c in chunks]
    )

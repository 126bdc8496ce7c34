# Invariant checkers and the deterministic simulator (ruaft.testing.invariants / .sim).
from ruaft.testing.invariants import ClusterChecker, InvariantViolation, check_log_matching

_SIM_EXPORTS = frozenset({"Simulation", "SimResult", "SimulationFailure", "World", "run_seed"})


def __getattr__(name: str) -> object:
    # The simulator is imported lazily so `python -m ruaft.testing.sim` runs it only once.
    if name in _SIM_EXPORTS:
        from ruaft.testing import sim

        return getattr(sim, name)
    raise AttributeError(f"module 'ruaft.testing' has no attribute {name!r}")

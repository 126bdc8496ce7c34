"""Shared fixtures for the linearizability checker tests."""

from __future__ import annotations

from pathlib import Path

import pytest

#: The repository root (tests/checker/conftest.py -> parents[2]).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Golden histories (Porcupine's MIT-licensed test data; see the README and licence there).
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "linearizability"


class FixturePath:
    """Callable: fixture name (e.g. ``"c01-ok"``) -> path of the golden history."""

    def __call__(self, name: str) -> Path:
        path = FIXTURES / "kv" / f"{name}.txt"
        assert path.is_file(), f"golden fixture {path} is missing"
        return path


@pytest.fixture
def fixture_path() -> FixturePath:
    """Returns a callable giving the path of a golden kv history."""
    return FixturePath()

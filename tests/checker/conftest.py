"""Shared fixtures for the linearizability checker tests."""

from __future__ import annotations

from pathlib import Path

import pytest

#: The repository root (tests/checker/conftest.py -> parents[2]).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Golden histories live beside the repository, in shared/ (see the fixtures README).
FIXTURES = REPO_ROOT.parent / "shared" / "fixtures" / "linearizability"


class FixturePath:
    """Callable: fixture name (e.g. ``"c01-ok"``) -> path; skips the test if absent."""

    def __call__(self, name: str) -> Path:
        path = FIXTURES / "kv" / f"{name}.txt"
        if not path.is_file():
            pytest.skip(f"golden fixture {path} is missing (expected shared/ beside the repository)")
        return path


@pytest.fixture
def fixture_path() -> FixturePath:
    """Returns a callable giving the path of a golden kv history, skipping if absent."""
    return FixturePath()

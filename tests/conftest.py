"""Shared pytest options."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--rewrite",
        action="store_true",
        help="regenerate the expected outputs of the golden interaction scripts "
        "(tests/core/testdata/*.txt); review the diff before committing",
    )

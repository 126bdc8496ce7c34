"""Golden interaction tests: run every `testdata/*.txt` script and compare its output.

The scripts are specifications, reviewed by hand against the Raft paper and thesis; the
command language is documented in `tests/core/interaction.py`. After an intended behaviour
change, regenerate the expected outputs with `pytest tests/core --rewrite` and review the
diff line by line before committing it.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from tests.core.interaction import Case, format_script, run_script

TESTDATA = Path(__file__).parent / "testdata"
SCRIPTS = sorted(TESTDATA.glob("*.txt"))


def test_scripts_exist() -> None:
    assert len(SCRIPTS) >= 8, f"expected at least 8 golden scripts in {TESTDATA}"


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_interaction(script: Path, request: pytest.FixtureRequest) -> None:
    items, outputs = run_script(script)
    if request.config.getoption("--rewrite"):
        script.write_text(format_script(items, outputs))
        return
    for item in items:
        if isinstance(item, Case) and outputs[item.line] != item.expected:
            diff = "\n".join(difflib.unified_diff(
                item.expected.split("\n"), outputs[item.line].split("\n"),
                "expected", "actual", lineterm=""))
            pytest.fail(f"{script.name}:{item.line}: {item.command}\n{diff}", pytrace=False)

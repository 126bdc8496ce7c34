"""The documented example runs, and its state survives a restart of all its peers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "replicated_counter.py"


def run_example(data_dir: Path, increments: int) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--data-dir", str(data_dir), "--increments", str(increments)],
        capture_output=True, text=True, timeout=90,
    )
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line.startswith("peer")]


def test_replicated_counter_example_survives_restart(tmp_path: Path) -> None:
    first = run_example(tmp_path, 30)
    assert first == [f"peer {i}: total=30 applied_index=30" for i in range(3)]
    second = run_example(tmp_path, 12)
    assert [line.split()[2] for line in second] == ["total=42"] * 3

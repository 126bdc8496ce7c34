"""Smoke test of scripts/bench.py: one tiny kv point pair on a real 3-peer cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(90)
def test_bench_tiny_run_gives_sane_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "bench.py"), "--clients", "1,4", "--peers", "3",
         "--duration", "2", "--warmup", "0.5", "--no-progress", "--json", str(out),
         "--markdown", str(md)],
        cwd=tmp_path, capture_output=True, text=True, timeout=80,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())
    points = [p for p in results["points"] if p["kind"] == "kv"]
    assert [p["clients"] for p in points] == [1, 4]
    for p in points:
        assert p["durable"] is True
        assert p["throughput"] > 0
        assert p["samples"] > 0
        assert 0 < p["p50_ms"] <= p["p99_ms"] <= p["p999_ms"]
        assert set(p["peer_rss_mb"]) == {"peer0", "peer1", "peer2"}
        assert p["gen_cpu_cores"] >= 0
    assert "| kv | put | 3 | 1 |" in md.read_text()
    # Every process the bench started (peers run in their own sessions) is gone.
    started = results["meta"]["started_pids"]
    assert len(started) >= 3 + 1 + 2  # 3 peers, workers for 1 and for 4 clients
    assert results["meta"]["pids_left_running"] == []
    alive = [pid for pid in started if psutil.pid_exists(pid)
             and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert alive == []
    after = {p.pid for p in psutil.Process().children(recursive=True)}
    assert after <= before

"""``python -m orchestrator.checker``: verdict lines, exit codes 0/1/2/3, HTML output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, FixturePath


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator.checker", *map(str, args)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def write_jsonl(path: Path, records: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def assert_clean_error(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 3, result
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr


def test_ok_fixture_exits_0(fixture_path: FixturePath) -> None:
    result = run_cli(fixture_path("c01-ok"), "--model", "kv")
    assert result.returncode == 0, result.stderr
    verdict, summary = result.stdout.splitlines()[:2]
    assert verdict == "OK"
    assert summary.startswith("10 partitions: 10 ok, 0 illegal, 0 unknown; 58 operations")


def test_illegal_fixture_exits_1_and_writes_html(fixture_path: FixturePath, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    result = run_cli(fixture_path("c10-bad"), "--model", "kv", "--timeout", "30", "--html", out)
    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "ILLEGAL"
    assert "8 illegal" in lines[1]
    assert any(line.startswith("  key '7': cannot place get('7') -> ''") for line in lines)
    page = out.read_text(encoding="utf-8")
    assert page.count('<section class="partition">') == 8
    assert "client 8" in page and "Could not be placed" in page
    assert "get(&#x27;7&#x27;) -&gt; &#x27;&#x27;" in page  # the failing op, escaped


def test_cas_register_jsonl_exits_0(tmp_path: Path) -> None:
    history = write_jsonl(
        tmp_path / "cas.jsonl",
        [
            {"process": 0, "type": "invoke", "f": "write", "key": "r", "value": 1, "time": 10},
            {"process": 0, "type": "ok", "f": "write", "key": "r", "value": 1, "time": 20},
            {"process": 1, "type": "invoke", "f": "cas", "key": "r", "value": [1, 2], "time": 30},
            {"process": 1, "type": "ok", "f": "cas", "key": "r", "value": [1, 2, True], "time": 40},
            {"process": 2, "type": "invoke", "f": "read", "key": "r", "value": None, "time": 50},
            {"process": 2, "type": "ok", "f": "read", "key": "r", "value": 2, "time": 60},
        ],
    )
    result = run_cli(history, "--model", "cas-register")
    assert result.returncode == 0 and result.stdout.startswith("OK\n"), result


def test_timeout_exits_2(tmp_path: Path) -> None:
    records: list[dict[str, object]] = []
    for p in range(30):
        records.append({"process": p, "type": "invoke", "f": "append", "key": "k", "value": f"<{p}>", "time": 1})
    for p in range(30):
        records.append({"process": p, "type": "ok", "f": "append", "key": "k", "value": f"<{p}>", "time": 2})
    records.append({"process": 99, "type": "invoke", "f": "get", "key": "k", "value": None, "time": 3})
    records.append({"process": 99, "type": "ok", "f": "get", "key": "k", "value": "nope", "time": 4})
    history = write_jsonl(tmp_path / "hard.jsonl", records)
    out = tmp_path / "unknown.html"
    result = run_cli(history, "--model", "kv", "--timeout", "0.3", "--html", out)
    assert result.returncode == 2, result
    assert result.stdout.splitlines()[0] == "UNKNOWN"
    assert "UNKNOWN" in out.read_text(encoding="utf-8")


def test_missing_file_exits_3(tmp_path: Path) -> None:
    missing = tmp_path / "nope.jsonl"
    assert_clean_error(run_cli(missing), str(missing), "cannot read")


def test_malformed_line_exits_3_naming_file_and_line(tmp_path: Path) -> None:
    history = tmp_path / "broken.jsonl"
    history.write_text(
        '{"process": 0, "type": "invoke", "f": "get", "key": "k"}\n'
        '{"process": 0, "type": "ok", "f": "get", "key": "k", "value": null}\n'
        '{"process": 1, "type": "invoke", "f": "get", "key": \n'
    )
    assert_clean_error(run_cli(history), f"{history}:3:", "invalid JSON")


def test_pairing_and_model_errors_exit_3(tmp_path: Path) -> None:
    orphan = write_jsonl(tmp_path / "orphan.jsonl", [{"process": 4, "type": "ok", "f": "get", "key": "k", "value": ""}])
    assert_clean_error(run_cli(orphan), f"{orphan}:1:", "no open invocation")
    wrong_model = write_jsonl(tmp_path / "cas.jsonl", [{"process": 0, "type": "invoke", "f": "cas", "key": "k", "value": [1, 2]}])
    assert_clean_error(run_cli(wrong_model, "--model", "kv"), f"{wrong_model}:1:", "no function 'cas'")


@pytest.mark.parametrize(
    "args, fragment",
    [
        ((), "required"),
        (("h.jsonl", "--model", "queue"), "invalid choice"),
        (("h.jsonl", "--timeout", "-1"), "non-negative"),
        (("h.jsonl", "--timeout", "soon"), "not a number"),
        (("h.jsonl", "--frobnicate"), "unrecognized arguments"),
    ],
)
def test_bad_arguments_exit_3(args: tuple[str, ...], fragment: str) -> None:
    assert_clean_error(run_cli(*args), fragment)


def test_help_exits_0() -> None:
    result = run_cli("--help")
    assert result.returncode == 0 and "--model" in result.stdout


def test_unwritable_html_exits_3(fixture_path: FixturePath, tmp_path: Path) -> None:
    result = run_cli(fixture_path("c01-bad"), "--html", tmp_path / "no" / "such" / "dir.html")
    assert result.returncode == 3 and "cannot write" in result.stderr and "Traceback" not in result.stderr


def test_main_in_process(fixture_path: FixturePath, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestrator.checker.cli import main

    assert main([str(fixture_path("c01-bad"))]) == 1
    assert capsys.readouterr().out.startswith("ILLEGAL\n")

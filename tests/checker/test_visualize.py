"""The HTML timeline: self-contained, one section per illegal key, lanes and the failing op."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from orchestrator.checker import (
    MODELS,
    OpInput,
    Operation,
    Verdict,
    check_events,
    check_operations,
    load_history,
    render_html,
    write_html,
)

from .conftest import FixturePath


def svg_elements(page: str) -> list[ET.Element]:
    """Every inline <svg> must be well-formed XML on its own."""
    return [ET.fromstring(svg) for svg in re.findall(r"<svg.*?</svg>", page, re.S)]


def test_illegal_fixture_page(fixture_path: FixturePath, tmp_path: Path) -> None:
    model = MODELS["kv"]
    result = check_events(model, load_history(fixture_path("c01-bad")))
    out = tmp_path / "c01-bad.html"
    write_html(out, result, model, title="c01-bad")
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page and "src=" not in page
    assert page.count('<section class="partition">') == 1  # only the illegal key
    assert "key &#x27;7&#x27;" in page
    (svg,) = svg_elements(page)
    assert "client 0" in page
    failed = [g for g in svg.iter("g") if "failed" in g.get("class", "")]
    assert len(failed) == 1
    assert "get(&#x27;7&#x27;) -&gt; &#x27;x 0 0 y&#x27;" in page
    (illegal,) = result.with_verdict(Verdict.ILLEGAL)
    linearized = [g for g in svg.iter("g") if "linearized" in g.get("class", "")]
    assert len(linearized) == len(illegal.linearization) == 3
    assert "#1" in ET.tostring(svg, encoding="unicode")


def test_lanes_indefinite_ops_and_selection() -> None:
    model = MODELS["cas-register"]
    ops = [
        Operation("alpha", OpInput("write", "r", 1), 0, None, 10),
        Operation("beta", OpInput("cas", "r", (1, 2)), 5, None, 6, unknown=True),
        Operation("gamma", OpInput("read", "r"), 20, 3, 30),
        Operation("gamma", OpInput("read", "s"), 20, None, 30),
    ]
    result = check_operations(model, ops)
    assert result.verdict is Verdict.ILLEGAL
    page = render_html(result, model)
    (svg,) = svg_elements(page)
    for client in ("alpha", "beta", "gamma"):
        assert f"client {client}" in page
    assert "∞" in page and "indefinite" in page
    assert "read(&#x27;r&#x27;) -&gt; 3" in page and "Could not be placed" in page
    every = render_html(result, model, partitions="all")
    assert every.count('<section class="partition">') == 2


def test_ok_result_shows_all_partitions(fixture_path: FixturePath) -> None:
    model = MODELS["kv"]
    result = check_events(model, load_history(fixture_path("c01-ok")))
    page = render_html(result, model)
    assert page.count('<section class="partition">') == 10
    assert "Could not be placed" not in page
    assert len(svg_elements(page)) == 10


def test_escaping_of_hostile_values() -> None:
    model = MODELS["kv"]
    ops = [
        Operation("<b>", OpInput("put", "<k>", "</svg><script>alert(1)</script>"), 0, None, 1),
        Operation(1, OpInput("get", "<k>"), 2, "&amp;", 3),
    ]
    page = render_html(check_operations(model, ops), model)
    assert "<script>" not in page and "</svg><script>" not in page
    assert len(svg_elements(page)) == 1

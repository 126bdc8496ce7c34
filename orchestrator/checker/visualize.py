"""Self-contained HTML timelines of checked histories (in the spirit of Porcupine's visualizer).

One section per partition shown; in each, one lane per client with operations as
bars from call to return.  Time is drawn by *rank* (each distinct call/return
instant gets one column), which keeps dense bursts readable.  Indefinite operations
extend to the right edge.  The longest linearizable prefix is green with each bar
numbered by its position in the linearization; the operation that could not be
placed is red and described below the timeline.  No external resources: inline
CSS and SVG only, so the file can be attached to a bug report as is.
"""

from __future__ import annotations

import html
import math
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Literal

from .check import CheckResult, PartitionResult
from .history import UNKNOWN_OUTPUT, Operation
from .models import Model
from .wgl import Verdict

__all__ = ["render_html", "write_html"]

Selection = Literal["auto", "all", "illegal"]

_LANE_HEIGHT = 32
_BAR_HEIGHT = 22
_LEFT = 96  # lane label gutter
_TOP = 8
_CHAR_WIDTH = 6.6  # approximate width of one 11px monospace character
_MAX_TEXT = 160  # longest state/value shown before eliding

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1f2328; }
h1 { font-size: 20px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 28px 0 6px; }
.summary { color: #57606a; margin: 0 0 12px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; vertical-align: middle; }
.badge.OK { background: #dafbe1; color: #1a7f37; }
.badge.ILLEGAL { background: #ffebe9; color: #cf222e; }
.badge.UNKNOWN { background: #fff8c5; color: #9a6700; }
.legend span { display: inline-block; margin-right: 16px; font-size: 12px; }
.legend i { display: inline-block; width: 18px; height: 10px; margin-right: 5px; vertical-align: middle; border: 1px solid; }
.timeline { overflow-x: auto; border: 1px solid #d0d7de; border-radius: 6px; background: #fff; }
svg text { font: 11px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
svg .lane-label { fill: #57606a; }
svg .lane { fill: #f6f8fa; }
svg .op rect { stroke-width: 1.2; }
svg .op.linearized rect { fill: #d3f0d8; stroke: #2da44e; }
svg .op.failed rect { fill: #ffcecb; stroke: #cf222e; stroke-width: 2.4; }
svg .op.pending rect { fill: #eaeef2; stroke: #8c959f; }
svg .op.indefinite rect { stroke-dasharray: 5 3; fill-opacity: 0.6; }
svg .op .order { font-weight: 700; fill: #1a7f37; }
svg .op.failed text { fill: #a40e26; font-weight: 600; }
svg .op.failed .order { fill: #a40e26; }
svg .infinity { fill: #8c959f; font-size: 13px; }
.callout { border-left: 4px solid #cf222e; background: #fff5f5; padding: 8px 12px; margin: 10px 0; }
.callout code, td code { word-break: break-all; }
details { margin: 8px 0 0; }
table { border-collapse: collapse; font-size: 13px; margin-top: 6px; }
th, td { border-bottom: 1px solid #d0d7de; padding: 3px 10px 3px 0; text-align: left; vertical-align: top; }
td.num { text-align: right; color: #57606a; }
"""


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _elide(text: str, limit: int) -> str:
    if limit <= 1:
        return "" if limit <= 0 else "…"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _client_order(client: Hashable) -> tuple[str, object]:
    return (type(client).__name__, client if isinstance(client, (int, str)) else repr(client))


def _show_time(value: float) -> str:
    return "∞" if math.isinf(value) else str(value)


def _describe(model: Model, op: Operation) -> str:
    return model.describe_operation(op.input, UNKNOWN_OUTPUT if op.unknown else op.output)


def _states_along(model: Model, partition: PartitionResult) -> list[object]:
    """The model state after each operation of the partition's linearization."""
    state = model.init()
    states = []
    for index in partition.linearization:
        op = partition.operations[index]
        _, state = model.step(state, op.input, UNKNOWN_OUTPUT if op.unknown else op.output)
        states.append(state)
    return states


def _timeline_svg(model: Model, partition: PartitionResult) -> str:
    """The lane diagram of one partition as an inline ``<svg>`` element."""
    ops = partition.operations
    instants = sorted({t for op in ops for t in (op.call, op.effective_return) if not math.isinf(t)})
    rank = {t: i for i, t in enumerate(instants)}
    columns = len(instants) + 1  # one spare column: the "infinity" edge
    unit = min(160.0, max(18.0, 1100.0 / columns))
    origin = _LEFT + 16
    width = origin + unit * columns + 24
    clients = sorted({op.client_id for op in ops}, key=_client_order)
    lane_of = {client: i for i, client in enumerate(clients)}
    height = _TOP * 2 + _LANE_HEIGHT * len(clients)
    order = {index: position for position, index in enumerate(partition.linearization, start=1)}

    def x(instant: float) -> float:
        return origin + unit * (columns - 0.5 if math.isinf(instant) else rank[instant])

    # Bar extents, then the free room right of each bar's start in its lane: a label
    # may run past a short bar, up to the next bar of the same client.
    extent: dict[int, tuple[float, float]] = {}
    for index, op in enumerate(ops):
        left = x(op.call)
        right = x(op.effective_return) if op.unknown else x(op.return_time) + unit * 0.6
        extent[index] = (left, max(6.0, right - left))
    room: dict[int, float] = {}
    for client in clients:
        lane = sorted((i for i, op in enumerate(ops) if op.client_id == client), key=lambda i: extent[i][0])
        for here, after in zip(lane, lane[1:] + [None]):
            limit = extent[after][0] if after is not None else width - 16
            room[here] = max(extent[here][1], limit - extent[here][0]) - 8

    parts = [f'<svg role="img" width="{width:.0f}" height="{height}" viewBox="0 0 {width:.0f} {height}">']
    for client, lane_index in lane_of.items():
        lane_top = _TOP + lane_index * _LANE_HEIGHT
        parts.append(
            f'<rect class="lane" x="0" y="{lane_top + 1}" width="{width:.0f}" height="{_LANE_HEIGHT - 2}"/>'
            f'<text class="lane-label" x="8" y="{lane_top + _LANE_HEIGHT / 2 + 4:.1f}">'
            f"{_esc(_elide(f'client {client}', 13))}<title>client {_esc(client)}</title></text>"
        )
    for index, op in enumerate(ops):
        y = _TOP + lane_of[op.client_id] * _LANE_HEIGHT + (_LANE_HEIGHT - _BAR_HEIGHT) / 2
        left, bar_width = extent[index]
        description = _describe(model, op)
        if index == partition.failed:
            kind, badge = "failed", "✗"
        elif index in order:
            kind, badge = "linearized", f"#{order[index]}"
        else:
            kind, badge = "pending", ""
        classes = f"op {kind} indefinite" if op.unknown else f"op {kind}"
        tooltip = f"{description}\nclient {op.client_id}, call {_show_time(op.call)}, return {_show_time(op.effective_return)}"
        if kind == "failed":
            tooltip = "could not be placed\n" + tooltip
        elif kind == "linearized":
            tooltip = f"#{order[index]} in the linearization\n" + tooltip
        text_y = y + _BAR_HEIGHT / 2 + 4
        chars = int(room[index] / _CHAR_WIDTH)
        label = ""
        if badge and chars >= len(badge):
            label += f'<tspan class="order">{_esc(badge)}</tspan>'
            chars -= len(badge) + 1
        if chars >= 4:
            label += f'<tspan dx="{5 if badge else 0}">{_esc(_elide(description, chars))}</tspan>'
        parts.append(
            f'<g class="{classes}"><title>{_esc(tooltip)}</title>'
            f'<rect x="{left:.1f}" y="{y:.1f}" width="{bar_width:.1f}" height="{_BAR_HEIGHT}" rx="3"/>'
            + (f'<text x="{left + 4:.1f}" y="{text_y:.1f}">{label}</text>' if label else "")
            + (f'<text class="infinity" x="{left + bar_width + 3:.1f}" y="{text_y:.1f}">∞</text>' if op.unknown else "")
            + "</g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _section(model: Model, partition: PartitionResult) -> str:
    verdict = partition.verdict
    total = len(partition.operations)
    states = _states_along(model, partition)
    prefix_len = len(partition.linearization)
    out = [
        f'<section class="partition"><h2>{_esc(partition.label)} '
        f'<span class="badge {verdict.value}">{verdict.value}</span></h2>'
    ]
    if verdict is Verdict.OK:
        out.append(f'<p class="summary">Linearizable: all {total} operations placed ({partition.steps} search steps).</p>')
    elif verdict is Verdict.ILLEGAL:
        out.append(
            f'<p class="summary">Not linearizable. Longest linearizable prefix found: '
            f"{prefix_len} of {total} operations ({partition.steps} search steps).</p>"
        )
    else:
        out.append(
            f'<p class="summary">Undecided: the time budget ran out after {partition.steps} search steps; '
            f"longest prefix reached so far: {prefix_len} of {total} operations.</p>"
        )
    out.append(f'<div class="timeline">{_timeline_svg(model, partition)}</div>')

    failed = partition.failed_operation
    if failed is not None:
        state = states[-1] if states else model.init()
        others = [i for i in partition.candidates() if i != partition.failed]
        out.append(
            '<div class="callout"><b>Could not be placed:</b> '
            f"<code>{_esc(_describe(model, failed))}</code> "
            f"(client {_esc(failed.client_id)}, call {_esc(_show_time(failed.call))}, "
            f"return {_esc(_show_time(failed.effective_return))}).<br>"
            f"State after the prefix: <code>{_esc(_elide(model.describe_state(state), _MAX_TEXT))}</code>. "
            "In that state none of the operations that may come next is legal, and this one, "
            "the first of them to return, cannot be deferred."
        )
        if others:
            listed = ", ".join(
                f"<code>{_esc(_describe(model, partition.operations[i]))}</code>" for i in others[:12]
            )
            more = f" and {len(others) - 12} more" if len(others) > 12 else ""
            out.append(f"<br>Also tried next, equally illegal: {listed}{more}.")
        out.append("</div>")

    if partition.linearization:
        heading = "Linearization" if verdict is Verdict.OK else "Longest linearizable prefix"
        rows = []
        for position, (index, state) in enumerate(zip(partition.linearization, states), start=1):
            op = partition.operations[index]
            full_state = model.describe_state(state)
            rows.append(
                f'<tr><td class="num">{position}</td><td>client {_esc(op.client_id)}</td>'
                f"<td><code>{_esc(_elide(_describe(model, op), _MAX_TEXT))}</code></td>"
                f'<td title="{_esc(full_state)}"><code>{_esc(_elide(full_state, _MAX_TEXT))}</code></td></tr>'
            )
        is_open = " open" if verdict is not Verdict.OK else ""
        out.append(
            f"<details{is_open}><summary>{heading} ({prefix_len} operations)</summary>"
            "<table><thead><tr><th>#</th><th>client</th><th>operation</th><th>state after</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table></details>"
        )
    out.append("</section>")
    return "".join(out)


def _select(result: CheckResult, selection: Selection) -> Sequence[PartitionResult]:
    if selection == "all":
        return result.partitions
    if selection == "illegal":
        return result.with_verdict(Verdict.ILLEGAL)
    if result.verdict is Verdict.OK:
        return result.partitions
    return result.with_verdict(result.verdict)


def render_html(
    result: CheckResult,
    model: Model,
    *,
    title: str = "Linearizability check",
    partitions: Selection = "auto",
) -> str:
    """Render ``result`` as a self-contained HTML page (no external resources).

    ``partitions`` picks the sections: ``"illegal"`` only illegal partitions,
    ``"all"`` every partition, ``"auto"`` (default) the illegal ones for an ILLEGAL
    result, the undecided ones for UNKNOWN, and all of them for OK.  ``model`` must be
    the model the result was checked with (it describes operations and states).
    """
    shown = _select(result, partitions)
    legend = (
        '<p class="legend">'
        '<span><i style="background:#d3f0d8;border-color:#2da44e"></i>linearized (#order)</span>'
        '<span><i style="background:#ffcecb;border-color:#cf222e"></i>could not be placed</span>'
        '<span><i style="background:#eaeef2;border-color:#8c959f"></i>not in the prefix</span>'
        '<span><i style="background:#fff;border-color:#8c959f;border-style:dashed"></i>indefinite (returns at ∞)</span>'
        "</p>"
    )
    body = "".join(_section(model, p) for p in shown) or "<p>No partitions to show.</p>"
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{_esc(title)}</title>'
        f"<style>{_CSS}</style></head><body>"
        f'<h1>{_esc(title)} <span class="badge {result.verdict.value}">{result.verdict.value}</span></h1>'
        f'<p class="summary">Model <code>{_esc(model.name)}</code>. {_esc(result.summary())}</p>'
        f"{legend}{body}</body></html>\n"
    )


def write_html(
    path: str | Path,
    result: CheckResult,
    model: Model,
    *,
    title: str = "Linearizability check",
    partitions: Selection = "auto",
) -> None:
    """Write :func:`render_html` output to ``path`` (UTF-8)."""
    page = render_html(result, model, title=title, partitions=partitions)
    Path(path).write_text(page, encoding="utf-8")

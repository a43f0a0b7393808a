"""report.html: one self-contained page that shows where a run's deltas sit, and why."""

# Why plotly: its figures are interactive without a server (hover names the text and its token
# counts; zoom on a log axis), and its whole JavaScript can be inlined once (plotly.offline.
# get_plotlyjs), so the file opens offline, as pytest-html's and Evidently's reports do. Altair
# needs vega, vega-lite and vega-embed from a CDN (or vendored by hand); matplotlib gives static
# images. Python computes the figures from the per-text frame; jinja2 holds the markup.

from __future__ import annotations

import difflib
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape
from plotly.offline import get_plotlyjs
from plotly.subplots import make_subplots

from parity.metrics import METRICS
from parity.report.markdown import (
    over_tolerance,
    plural,
    texts_line,
    verdict_text,
    worst_cause,
    worst_key,
)
from parity.report.results import pair_name

TEMPLATES = Path(__file__).parent / "templates"
# texts drawn as dots on the page, shared by all pairs (each is a dot on both sides): plotly
# writes JSON with \\u escapes, so a 40-character non-ASCII hover text costs ~250 bytes a dot;
# the max-per-token-count line covers every row whatever the sample
SCATTER_BUDGET = 4000
HOVER_CHARS = 40
HIST_BINS = 40
LOG_FLOOR = 1e-12  # a delta of exactly 0 is drawn here on the log axes
PREVIEW_CHARS = 400
ZERO_WIDTH = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"}
PASS_COLOUR, FAIL_COLOUR = "#2e7d32", "#c62828"


def render_html(
    summary: dict[str, Any],
    frame: pd.DataFrame,
    *,
    title: str = "parity report",
    tokens: dict[str, list[list[str]] | None] | None = None,
    sampled: str | None = None,
) -> str:
    """The whole page for a summary.json dict and its per-text frame (results.parquet); `tokens`
    (each adapter's token strings per text) adds the token diff of the worst texts; `sampled`
    says, under each pair's statistics, that its figures come from a sample of the frame."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"])
    )
    template = env.get_template("report.html.j2")
    configs = {a["label"]: a["config"] for a in summary["adapters"]}
    return template.render(
        title=title,
        summary=summary,
        verdict=verdict_text(summary),
        texts_line=texts_line(summary),
        environment=environment(summary),
        plotlyjs=Markup(get_plotlyjs()),
        plural=plural,
        matrix=_figure_html(matrix_figure(summary), "matrix"),
        pairs=_pair_views(summary, frame, configs, tokens or {}),
        metrics=METRICS,
        tol=lambda metric: _tol_text(summary["tolerance"], metric),
        fmt=_num,
        sampled=sampled,
    )


def _num(value: Any) -> str:
    if value is None:
        return "NaN"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _tol_text(tolerance: dict[str, Any], metric: str) -> str:
    value = tolerance.get(metric)
    return "off" if value is None else f"{value:g}"


def environment(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """Model, devices and library versions (each distinct value once) for the banner."""
    rows = [("model", str(summary.get("model", "-")))]
    devices = sorted({str(a["config"].get("device", "-")) for a in summary["adapters"]})
    rows.append(("device", ", ".join(devices)))
    versions: dict[str, set[str]] = {}
    for adapter in summary["adapters"]:
        for library, version in (adapter["config"].get("versions") or {}).items():
            versions.setdefault(library, set()).add(str(version))
    rows += [(lib, " / ".join(sorted(v))) for lib, v in sorted(versions.items())]
    return rows


def _figure_html(figure: go.Figure, div_id: str) -> Markup:
    html = figure.to_html(
        full_html=False,
        include_plotlyjs=False,
        div_id=div_id,
        config={"displaylogo": False, "responsive": True},
    )
    return Markup(html)


def matrix_figure(summary: dict[str, Any]) -> go.Figure:
    """Adapters x adapters: the worst Euclidean delta of each pair, green within tolerance and
    red beyond (the colour is the pair's verdict; the number is its worst text)."""
    labels = [a["label"] for a in summary["adapters"]]
    for pair in summary["pairs"]:  # the gate's baseline sides
        labels += [side for side in (pair["a"], pair["b"]) if side not in labels]
    size = len(labels)
    verdict = np.full((size, size), np.nan)
    text = [["" for _ in labels] for _ in labels]
    for pair in summary["pairs"]:
        i, j = labels.index(pair["a"]), labels.index(pair["b"])
        worst = pair["stats"]["euclidean"]["max"]
        cell = f"{_num(worst)}<br>{'pass' if pair['passed'] else 'FAIL'}"
        for x, y in ((i, j), (j, i)):
            verdict[x, y] = 0.0 if pair["passed"] else 1.0
            text[x][y] = cell
    figure = go.Figure(
        go.Heatmap(
            z=verdict,
            x=labels,
            y=labels,
            text=text,
            texttemplate="%{text}",
            colorscale=[[0, PASS_COLOUR], [1, FAIL_COLOUR]],
            zmin=0,
            zmax=1,
            showscale=False,
            hovertemplate="%{y} vs %{x}: worst euclidean %{text}<extra></extra>",
        )
    )
    figure.update_layout(
        title="Worst Euclidean delta per pair (red: beyond tolerance)",
        height=220 + 70 * size,
        margin={"l": 200, "b": 80},
        yaxis={"autorange": "reversed"},
    )
    return figure


def _log_values(values: pd.Series) -> np.ndarray:
    finite = values.to_numpy(dtype=np.float64)
    clipped: np.ndarray = np.clip(finite[np.isfinite(finite)], LOG_FLOOR, None)
    return clipped


def distribution_figure(rows: pd.DataFrame, tolerance: dict[str, Any]) -> go.Figure:
    """Each metric's distribution over the pair's texts on a log axis (a histogram of log10
    values, so 100,000 texts are 40 bars), with the tolerance as a vertical line."""
    shown = [m for m in METRICS if rows[m].notna().any()]
    figure = make_subplots(rows=1, cols=max(len(shown), 1), subplot_titles=shown)
    for col, metric in enumerate(shown, start=1):
        values = np.log10(_log_values(rows[metric]))
        if not values.size:
            continue
        low, high = float(values.min()), float(values.max())
        edges = np.linspace(low, high if high > low else low + 1, HIST_BINS + 1)
        counts, _ = np.histogram(values, bins=edges)
        figure.add_trace(
            go.Scatter(
                x=10**edges,
                y=[*counts.tolist(), 0],
                line_shape="hv",
                fill="tozeroy",
                name=metric,
                showlegend=False,
                hovertemplate="%{x:.3g}: %{y} texts<extra></extra>",
            ),
            row=1,
            col=col,
        )
        limit = tolerance.get(metric)
        if limit is not None:
            figure.add_trace(
                go.Scatter(
                    x=[limit, limit],
                    y=[0, int(counts.max())],
                    mode="lines",
                    line={"color": FAIL_COLOUR, "dash": "dash"},
                    name=f"tolerance {limit:g}",
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
        figure.update_xaxes(type="log", row=1, col=col)
    figure.update_layout(height=300, title="Distribution of each metric (log axis)")
    return figure


def sample_rows(rows: pd.DataFrame, limit: int = SCATTER_BUDGET) -> pd.DataFrame:
    """At most `limit` rows: every failing text first (up to half), then a fixed random sample."""
    if len(rows) <= limit:
        return rows
    failing = rows[~rows["passed"]]
    failing = failing.sample(min(len(failing), limit // 2), random_state=0)
    rest = rows.drop(failing.index)
    return pd.concat([failing, rest.sample(limit - len(failing), random_state=0)])


def length_figure(
    rows: pd.DataFrame,
    tolerance: dict[str, Any],
    configs: dict[str, dict[str, Any]],
    dots: int = SCATTER_BUDGET,
) -> go.Figure | None:
    """Euclidean delta against each side's token count: a side that truncates differently shows
    as a step (deltas jump where the shorter max_length starts to cut). The line is the largest
    delta at each token count over every text; the dots are a sample of `dots` texts. None
    without token counts."""
    sides = [s for s in ("a", "b") if rows[f"tokens_{s}"].notna().any()]
    if not sides:
        return None
    figure = go.Figure()
    points = sample_rows(rows, dots)
    for side, colour in zip(sides, ("#1565c0", "#ef6c00"), strict=False):
        label = str(rows[side].iloc[0])
        counts = rows[f"tokens_{side}"].astype("float64")
        step = rows.assign(n=counts).groupby("n")["euclidean"].max().clip(lower=LOG_FLOOR)
        figure.add_trace(
            go.Scatter(
                x=step.index.to_numpy(),
                y=step.to_numpy(),
                mode="lines",
                line_shape="hv",
                line={"color": colour},
                name=f"max at each token count of {label}",
            )
        )
        figure.add_trace(_length_points(points, side, label, colour))
        max_length = (configs.get(label) or {}).get("max_length")
        if isinstance(max_length, int):
            figure.add_vline(
                x=max_length,
                line={"color": colour, "dash": "dot"},
                annotation_text=f"{label} max_length {max_length}",
            )
    limit = tolerance.get("euclidean")
    if limit is not None:
        figure.add_hline(y=limit, line={"color": FAIL_COLOUR, "dash": "dash"})
        figure.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines",
                name=f"euclidean tolerance {limit:g}",
                line={"color": FAIL_COLOUR, "dash": "dash"},
            )
        )
    figure.update_layout(
        title="Euclidean delta against each side's token count (0 drawn at 1e-12)",
        xaxis_title="tokens",
        yaxis={"type": "log", "title": "euclidean"},
        height=420,
    )
    return figure


def _length_points(points: pd.DataFrame, side: str, label: str, colour: str) -> go.Scatter:
    return go.Scatter(
        x=points[f"tokens_{side}"].astype("float64").to_numpy(),
        y=np.clip(points["euclidean"].to_numpy(dtype=np.float64), LOG_FLOOR, None),
        mode="markers",
        marker={"color": colour, "size": 5, "opacity": 0.5},
        name=f"texts by tokens of {label}",
        text=[
            f"#{i} {t[:HOVER_CHARS]!r}"
            for i, t in zip(points["text_id"], points["text"], strict=True)
        ],
        hovertemplate="%{text}<br>%{x} tokens, euclidean %{y:.3g}<extra></extra>",
    )


def visible(text: str, limit: int = PREVIEW_CHARS) -> Markup:
    """The text with whitespace made visible (· ↵ ⇥), zero-width characters named and other
    non-ASCII characters marked, cut at `limit` characters. A space is a grey "·", not "␠":
    common fonts (DejaVu, Chromium's default on Linux) have no glyph for U+2420; a real "·"
    in a text is non-ASCII, so it is marked and cannot be mistaken for a space."""
    out: list[str] = []
    for char in text[:limit]:
        if char == " ":
            out.append('<span class="ws">·</span>')
        elif char == "\n":
            out.append('<span class="ws">↵</span><br>')
        elif char == "\t":
            out.append('<span class="ws">⇥</span>')
        elif char in ZERO_WIDTH or unicodedata.category(char) in ("Cf", "Cc", "Zs", "Zl", "Zp"):
            out.append(f'<span class="zw">U+{ord(char):04X}</span>')
        elif ord(char) > 127:
            name = unicodedata.name(char, f"U+{ord(char):04X}")
            out.append(f'<span class="na" title="{escape(name)}">{escape(char)}</span>')
        else:
            out.append(str(escape(char)))
    if len(text) > limit:
        out.append(f'<span class="cut">… ({len(text) - limit} more characters)</span>')
    return Markup("".join(out))


def token_diff(a_tokens: list[str], b_tokens: list[str], context: int = 6) -> Markup:
    """The two sides' tokens aligned: tokens only one side has are highlighted (del: a's,
    ins: b's); long runs of equal tokens are folded to their count."""
    parts: list[str] = []
    matcher = difflib.SequenceMatcher(a=a_tokens, b=b_tokens, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            run = a_tokens[a0:a1]
            if len(run) > 2 * context:
                run = [
                    *run[:context],
                    f"… {len(run) - 2 * context} equal tokens …",
                    *run[-context:],
                ]
            parts += [f'<span class="tok">{escape(t)}</span>' for t in run]
            continue
        parts += [f'<del class="tok">{escape(t)}</del>' for t in a_tokens[a0:a1]]
        parts += [f'<ins class="tok">{escape(t)}</ins>' for t in b_tokens[b0:b1]]
    return Markup(" ".join(parts))


def _pair_views(
    summary: dict[str, Any],
    frame: pd.DataFrame,
    configs: dict[str, dict[str, Any]],
    tokens: dict[str, list[list[str]] | None],
) -> list[dict[str, Any]]:
    """What the template shows of each pair: figures, the worst texts (or, when an earlier
    pair has the same worst texts with the same deltas, its name instead of a repeated table)."""
    tolerance, shown = summary["tolerance"], dict[tuple[Any, ...], str]()
    views = []
    for number, pair in enumerate(summary["pairs"]):
        name = pair_name(pair["a"], pair["b"])
        rows = frame[frame["pair"] == name]
        view: dict[str, Any] = {"pair": pair, "name": name, "same_as": None, "worst": []}
        dist = distribution_figure(rows, tolerance)
        view["distribution"] = _figure_html(dist, f"pair{number}-distribution")
        dots = SCATTER_BUDGET // len(summary["pairs"])  # the page's budget, shared
        length = length_figure(rows, tolerance, configs, dots) if len(rows) else None
        view["length"] = None if length is None else _figure_html(length, f"pair{number}-length")
        key = worst_key(pair)
        if not pair["passed"] and key in shown:
            view["same_as"] = shown[key]
        elif not pair["passed"]:
            shown[key] = name
            view["worst"] = [_worst_row(pair, w, rows, tokens) for w in pair["worst"]]
        views.append(view)
    return views


def _worst_row(
    pair: dict[str, Any],
    worst: dict[str, Any],
    rows: pd.DataFrame,
    tokens: dict[str, list[list[str]] | None],
) -> dict[str, Any]:
    index = int(worst["index"])
    match = rows[rows["text_id"] == index]
    text = str(match["text"].iloc[0]) if len(match) else str(worst["text"])
    a_tokens, b_tokens = tokens.get(pair["a"]), tokens.get(pair["b"])
    diff = None
    if a_tokens is not None and b_tokens is not None and index < min(len(a_tokens), len(b_tokens)):
        diff = token_diff(a_tokens[index], b_tokens[index])
    counts = [
        (pair[side], match[f"tokens_{side}"].iloc[0] if len(match) else None) for side in ("a", "b")
    ]
    return {
        "index": index,
        "text": visible(text),
        "values": {m: worst.get(m) for m in METRICS},
        "over": over_tolerance(worst),
        "cause": worst_cause(pair, worst),
        "tokens": ", ".join(f"{label} {n}" for label, n in counts),
        "diff": diff,
    }


def _count(value: Any) -> str:
    return "?" if pd.isna(value) else str(int(value))


def write_html(
    path: Path,
    summary: dict[str, Any],
    frame: pd.DataFrame,
    *,
    title: str = "parity report",
    tokens: dict[str, list[list[str]] | None] | None = None,
    sampled: str | None = None,
) -> Path:
    """Render and write report.html atomically; an unwritable place is the user's to fix."""
    from parity.errors import ParityInputError
    from parity.files import os_reason, write_atomic

    try:
        page = render_html(summary, frame, title=title, tokens=tokens, sampled=sampled)
        write_atomic(path, page)
    except OSError as exc:
        raise ParityInputError(
            f"{exc.filename or path}: cannot write the HTML report: {os_reason(exc)}; "
            "give --out a writable directory"
        ) from exc
    return path

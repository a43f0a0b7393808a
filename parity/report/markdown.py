"""report.md: a readable account of a run, pair by pair, worst texts first."""

from __future__ import annotations

from typing import Any

from parity.diagnose.settings import CONFIG_KEYS, config_differences
from parity.metrics import METRICS, NON_FINITE


def _num(value: Any) -> str:
    if value is None:
        return "NaN"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text.replace("|", "\\|").replace("\n", "\\n")


def _tol(tolerance: dict[str, Any], metric: str) -> str:
    """A metric's tolerance as written; a metric left out of summary.json is off."""
    value = tolerance.get(metric)
    return "off" if value is None else f"{value:g}"


def _decided(pair: dict[str, Any]) -> str:
    """Which metrics failed the pair's failing texts, e.g. 'euclidean 12, max_abs 3'."""
    counts = pair.get("decided_by") or {}
    return ", ".join(f"{m} {n}" for m, n in counts.items() if n) or "-"


def _preview(text: str, limit: int = 70) -> str:
    shown = repr(text if len(text) <= limit else text[:limit] + "…")
    return "`" + shown.replace("`", "'").replace("|", "\\|") + "`"


def plural(count: int, noun: str) -> str:
    """'1 text', '2 texts', '2 queries'."""
    if count == 1:
        return f"{count} {noun}"
    return f"{count} {noun[:-1]}ies" if noun.endswith("y") else f"{count} {noun}s"


def verdict_text(summary: dict[str, Any]) -> str:
    """The headline every report shows (markdown, HTML, CI summary): it agrees with the exit code."""
    if summary.get("baseline"):
        return gate_verdict(summary["baseline"])
    failed = [p for p in summary["pairs"] if not p["passed"]]
    if summary["passed"]:
        return "PASS: every pair is within tolerance"
    return f"FAIL: {len(failed)} of {len(summary['pairs'])} pairs differ beyond tolerance"


def texts_line(summary: dict[str, Any]) -> str:
    """How many texts were compared text by text, and what else was embedded (the retrieval set,
    which the terminal's "embedding N texts" counts too)."""
    line = f"{plural(summary['n_texts'], 'text')} compared text by text"
    queries = next(
        (len(p["retrieval"].get("per_query", [])) for p in summary["pairs"] if p.get("retrieval")),
        0,
    )
    if queries:
        line += (
            f"; the built-in retrieval set ({plural(queries, 'query')} and their documents) was "
            "embedded in the same calls (so the progress line counts more texts) and shows only "
            "under Retrieval impact"
        )
    return line


def render_markdown(summary: dict[str, Any], title: str = "parity report") -> str:
    """Render a summary.json dict (as written) to Markdown."""
    tol = summary["tolerance"]
    lines = [f"# {title}", ""]
    lines += [f"**{verdict_text(summary)}**", ""]
    lines += [f"- model: `{summary['model']}`", f"- texts: {texts_line(summary)}"]
    lines += ["- tolerance: " + ", ".join(f"{m} {_tol(tol, m)}" for m in METRICS), ""]
    if summary.get("baseline"):
        lines += baseline_lines(summary["baseline"])
    configs = {a["label"]: a["config"] for a in summary["adapters"]}
    lines += ["## Adapters", "", "| label | " + " | ".join(CONFIG_KEYS) + " |"]
    lines += ["|" + "---|" * (len(CONFIG_KEYS) + 1)]
    for label, config in configs.items():
        lines.append(f"| {label} | " + " | ".join(_cell(config.get(k)) for k in CONFIG_KEYS) + " |")
    lines += pairs_table(summary["pairs"])
    shown: dict[tuple[Any, ...], str] = {}
    for pair in summary["pairs"]:
        lines += pair_lines(pair, tol, configs, shown)
    lines += retrieval_lines(summary["pairs"])
    if summary.get("outlier"):
        lines += [
            "",
            f"**Outlier:** `{summary['outlier']}` differs from every other adapter, "
            "which agree with each other.",
        ]
    for section in summary.get("extra_sections", []):
        lines += ["", section]
    return "\n".join(lines) + "\n"


def pairs_table(pairs: list[dict[str, Any]]) -> list[str]:
    """One row per pair: verdict, failing texts, the metrics that failed them, max per metric."""
    lines = [
        "",
        "## Pairs",
        "",
        "| pair | verdict | failing texts | failed by | "
        + " | ".join(f"max {m}" for m in METRICS)
        + " |",
        "|---|---|---|---|" + "---|" * len(METRICS),
    ]
    for pair in pairs:
        verdict = "pass" if pair["passed"] else "**FAIL**"
        stats = " | ".join(_num(pair["stats"].get(m, {}).get("max")) for m in METRICS)
        lines.append(
            f"| {pair['a']} vs {pair['b']} | {verdict} | {pair['failures']}/{pair['n']} | "
            f"{_decided(pair)} | {stats} |"
        )
    return lines


def pair_lines(
    pair: dict[str, Any],
    tol: dict[str, Any],
    configs: dict[str, dict[str, Any]],
    shown: dict[tuple[Any, ...], str] | None = None,
) -> list[str]:
    """One pair's section: metric statistics, settings that differ, causes, worst texts (a table
    already shown under an earlier pair is referred to, not repeated; `shown` remembers them)."""
    lines = ["", f"## {pair['a']} vs {pair['b']}", ""]
    lines.append("| metric | max | mean | p50 | p99 | tolerance | smallest tolerance that passes |")
    lines.append("|---|---|---|---|---|---|---|")
    least = pair.get("min_tolerance") or {}
    for m in (m for m in METRICS if m in pair["stats"]):
        s = pair["stats"][m]
        lines.append(
            f"| {m} | {_num(s['max'])} | {_num(s['mean'])} | {_num(s['p50'])} | "
            f"{_num(s['p99'])} | {_tol(tol, m)} | {_num(least.get(m, s['max']))} |"
        )
    a_config = pair.get("baseline_config") or configs.get(pair["a"], {})
    diffs = config_differences(a_config, configs.get(pair["b"], {}))
    if diffs:
        lines += ["", "Effective settings that differ:", ""]
        lines += [
            f"- {k}: {pair['a']} = `{_cell(va)}`, {pair['b']} = `{_cell(vb)}`"
            for k, va, vb in diffs
        ]
    if pair.get("causes"):
        lines += ["", "### Why they differ", ""]
        lines += stage_lines(pair.get("diagnosis") or {})
        for cause in pair["causes"]:
            name = "+".join([cause["cause"], *cause.get("also", [])])
            evidence = cause.get("evidence", "measured")
            marker = "inferred: " if evidence == "inferred" else ""
            basis = f" ({evidence}: {cause['basis']})" if cause.get("basis") else ""
            lines.append(
                f"- {marker}**{name}** ({plural(cause['explained'], 'text')}, stage "
                f"{cause.get('stage') or '-'}): {cause['detail']} Fix: {cause['fix']}{basis}"
            )
    if pair["passed"]:
        return lines
    key = worst_key(pair)
    name = f"{pair['a']} vs {pair['b']}"
    if shown is not None and key in shown:
        return [
            *lines,
            "",
            f"Worst texts: the same {plural(len(pair['worst']), 'text')} with the same deltas as "
            f"under {shown[key]} ({pair['failures']} of {pair['n']} fail).",
        ]
    if shown is not None:
        shown[key] = name
    return lines + worst_lines(pair)


def worst_key(pair: dict[str, Any]) -> tuple[Any, ...]:
    """What makes two pairs' worst-texts tables the same: the texts and their deltas."""
    return tuple((w["index"], *(_num(w.get(m)) for m in METRICS)) for w in pair["worst"])


def over_tolerance(worst: dict[str, Any]) -> str:
    """The metrics over tolerance of one worst text; for NaN/Inf, the side it came from."""
    failed = worst.get("failed_metrics", [])
    if NON_FINITE in failed:
        return "; ".join(worst.get("reasons", [])) or NON_FINITE
    return ", ".join(failed) or "none (within tolerance)"


def worst_cause(pair: dict[str, Any], worst: dict[str, Any]) -> str:
    """A worst text's cause: '-' when it passed, 'not diagnosed' when no cause names it."""
    if not worst.get("failed_metrics"):
        return "-"
    return text_cause(pair, worst["index"]) or "not diagnosed"


def text_cause(pair: dict[str, Any], index: int) -> str | None:
    """The diagnosed cause of one failing text (its name, "inferred: " when not measured); a
    cause explaining all the pair's failures is every failing text's (call it for failing
    texts only)."""
    causes = pair.get("causes") or []
    for cause in causes:
        whole = len(causes) == 1 and cause.get("explained") == pair.get("failures")
        if whole or index in cause.get("indices", []):
            name = "+".join([cause["cause"], *cause.get("also", [])])
            return f"inferred: {name}" if cause.get("evidence") == "inferred" else name
    return None


def stage_lines(diagnosis: dict[str, Any]) -> list[str]:
    """The first stage that differs, claimed only where the stage walk measured it."""
    stage = diagnosis.get("first_stage")
    if not stage:
        return []
    if diagnosis.get("first_stage_evidence") == "measured":
        return [f"First stage that differs: `{stage}`.", ""]
    return [f"Stage (inferred from the cause): `{stage}`.", ""]


def worst_lines(pair: dict[str, Any]) -> list[str]:
    """The worst texts of a failing pair, each with its metrics, the metrics over tolerance and
    its diagnosed cause (why it fails, beyond which number is too big)."""
    lines = [
        "",
        f"Worst texts ({pair['failures']} of {pair['n']} fail; failing texts by the metric "
        f"over its tolerance: {_decided(pair)}):",
        "",
        "| # | text | " + " | ".join(METRICS) + " | over tolerance | cause |",
        "|---|---|" + "---|" * len(METRICS) + "---|---|",
    ]
    for w in pair["worst"]:
        over = over_tolerance(w)
        cause = worst_cause(pair, w)
        values = " | ".join(_num(w.get(m)) for m in METRICS)
        lines.append(f"| {w['index']} | {_preview(w['text'])} | {values} | {over} | {cause} |")
    return lines


def baseline_lines(baseline: dict[str, Any]) -> list[str]:
    """The gate's account: which adapters drifted from the baseline, and what changed around them."""
    lines = [
        "## Against the baseline",
        "",
        f"Baseline `{baseline['path']}`, created {baseline['created']} by parity "
        f"{baseline['tool_version']}.",
        "",
        "| adapter | baseline adapter | verdict | drifted texts | max max_abs |",
        "|---|---|---|---|---|",
    ]
    for label, entry in baseline["adapters"].items():
        verdict = "**DRIFTED**" if entry["drifted"] else "unchanged"
        lines.append(
            f"| {label} | {entry['baseline_adapter']} | {verdict} | "
            f"{entry['failures']}/{entry['n']} | {_num(entry['max_abs'])} |"
        )
    overridden = baseline.get("overridden") or {}
    if overridden:
        lines += ["", "Overridden (the other adapters were gated as recorded):", ""]
        lines += [f"- `{k}` gated as `{v}`" for k, v in overridden.items()]
    gating = [
        f"- **{label}**: nDCG@10 dropped more than {baseline['max_ndcg_drop']:g} from the baseline"
        for label in baseline.get("ndcg_failures", [])
    ]
    gating += [
        f"- **{name}** fails now but passed when the baseline was made"
        for name in baseline.get("newly_failing_pairs", [])
    ]
    if gating:
        lines += ["", "Also failing the gate:", "", *gating]
    gains = baseline.get("ndcg_gains") or {}
    if gains:
        lines += ["", "nDCG@10 rose (reported, not a failure):", ""]
        lines += [f"- {label}: +{gain:.3g}" for label, gain in gains.items()]
    lines += ["", "Environment against the manifest:", ""]
    lines += [f"- {line}" for line in baseline["environment_diff"]] or ["- unchanged"]
    if baseline.get("retrieval_note"):
        lines.append(f"- retrieval: {baseline['retrieval_note']}")
    if baseline.get("updated"):
        lines.append(
            f"- baseline updated in place; the previous one is in `{baseline.get('previous')}`"
        )
    return [*lines, ""]


def gate_verdict(baseline: dict[str, Any]) -> str:
    """The gate's headline: drift, ranking and newly failing pairs decide it, not cross pairs;
    `gate --update` over a failed check passes, as the terminal's UPDATED line and exit 0 say."""
    if baseline["passed"]:
        return (
            f"PASS: no adapter drifted from the baseline ({len(baseline['adapters'])} checked); "
            "pairs between adapters are reported below"
        )
    parts = [f"drifted: {', '.join(baseline['drifted'])}"] if baseline["drifted"] else []
    if baseline.get("ndcg_failures"):
        parts.append(f"nDCG@10 dropped: {', '.join(baseline['ndcg_failures'])}")
    if baseline.get("newly_failing_pairs"):
        parts.append(f"newly failing: {', '.join(baseline['newly_failing_pairs'])}")
    if baseline.get("updated"):
        return (
            "UPDATED: today's vectors are the new baseline; the check they replaced: FAIL: "
            + "; ".join(parts)
        )
    return "FAIL: " + "; ".join(parts)


def retrieval_lines(pairs: list[dict[str, Any]]) -> list[str]:
    """Ranking impact on the built-in retrieval set, one row per pair that has it."""
    rows = [p for p in pairs if p.get("retrieval")]
    if not rows:
        return []
    lines = [
        "",
        "## Retrieval impact",
        "",
        "Built-in bilingual retrieval set; rankings by cosine. nDCG@10 diff is b - a; "
        "'long docs' counts only documents whose answer lies past token 256.",
        "",
        "| pair | nDCG@10 a | nDCG@10 b | diff | long docs a | long docs b | long docs diff "
        "| top-10 overlap | Kendall tau | max score delta cos / dot / euclid |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for pair in rows:
        impact = pair["retrieval"]
        ndcg, long_docs = impact["ndcg@10"], impact["ndcg@10_long_docs"]
        delta = impact["score_delta"]
        lines.append(
            f"| {pair['a']} vs {pair['b']} | {_num(ndcg['a'])} | {_num(ndcg['b'])} | "
            f"{_signed(ndcg['diff'])} | {_num(long_docs['a'])} | {_num(long_docs['b'])} | "
            f"{_signed(long_docs['diff'])} | {_num(impact['top10_overlap'])} | "
            f"{_num(impact['kendall_tau'])} | "
            + " / ".join(_num(delta[m]["max"]) for m in ("cosine", "dot", "euclidean"))
            + " |"
        )
    return lines


def _signed(value: Any) -> str:
    return "NaN" if value is None else f"{value:+.3g}"

"""The data gate as a self-contained HTML page with plots, and as a table of flagged rows.

Plots are rendered with matplotlib's Agg backend and embedded as base64 PNGs, so the page is one
file an MLflow artifact view can show. Stages never draw: this module reads their results.
"""

from __future__ import annotations

import base64
import io
from html import escape
from typing import Any, Mapping

import numpy as np

from secure_pipeline.report import checks_table, page_head, table
from secure_pipeline.stage import StageResult

def flagged_rows(results: Mapping[str, StageResult]) -> list[dict[str, Any]]:
    """One record per (check, row, detector): the table of flagged rows with reasons and scores."""
    records = []
    for name, result in results.items():
        for finding in result.findings:
            if finding.row is None:
                continue
            records.append({"check": name, "row": finding.row, "detector": finding.detector or name,
                            "column": finding.column, "score": finding.score, "reason": finding.reason})
    records.sort(key=lambda r: (r["row"], r["check"], r["detector"]))
    return records


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "<img alt='plot' src='data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii") + "'>"


def _plots(results: Mapping[str, StageResult]) -> list[str]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out = []
    counts: dict[str, set[int]] = {}
    for name, result in results.items():
        for f in result.findings:
            if f.row is not None:
                counts.setdefault(f"{name}:{f.detector or name}", set()).add(f.row)
    if counts:
        labels = sorted(counts)
        fig, ax = plt.subplots(figsize=(7, 0.4 * len(labels) + 1))
        ax.barh(labels, [len(counts[k]) for k in labels], color="#cf222e")
        ax.set_xlabel("flagged rows")
        ax.set_title("Flagged rows per detector")
        out.append(_png(fig))
    scores: dict[str, np.ndarray] = {}
    for name, result in results.items():
        for key, values in (result.outputs.get("row_scores") or {}).items():
            values = np.asarray(values, dtype=float)
            values = values[np.isfinite(values)]
            if values.size:
                scores[f"{name}: {key}"] = values
    if scores:
        fig, axes = plt.subplots(len(scores), 1, figsize=(7, 2.2 * len(scores)), squeeze=False)
        for ax, (label, values) in zip(axes[:, 0], scores.items()):
            ax.hist(values, bins=60, color="#0969da", log=True)
            ax.set_title(f"Score distribution — {label} ({values.size:,} rows)", fontsize=9)
        fig.tight_layout()
        out.append(_png(fig))
    return out


def render(report: Mapping[str, Any], results: Mapping[str, StageResult], *, max_rows: int = 500) -> str:
    """The data report (contract JSON) and the stages' row scores as one HTML page with plots."""
    verdict = "passed" if report["passed"] else "failed"
    parts = [
        page_head("secure-pipeline data report"),
        f"<h1>Data gate: <span class='{verdict}'>{verdict}</span></h1>",
        f"<p>{report['rows']:,} rows · dataset <code>{escape(report['dataset_digest'])}</code></p>",
        "<h2>Checks</h2>" + checks_table(report["checks"]),
    ]
    try:
        plots = _plots(results)
    except Exception as exc:  # noqa: BLE001 - a plot must never sink the report
        plots = [f"<p>plots unavailable: {escape(str(exc))}</p>"]
    if plots:
        parts.append("<h2>Plots</h2>" + "".join(plots))
    rows = flagged_rows(results)
    if rows:
        parts.append(f"<h2>Flagged rows (first {min(len(rows), max_rows)} of {len(rows)})</h2>")
        parts.append(table(
            ["row", "check", "detector", "column", "score", "reason"],
            [[str(r["row"]), escape(r["check"]), escape(str(r["detector"])), escape(str(r["column"] or "")),
              "" if r["score"] is None else f"{r['score']:.3g}", escape(r["reason"])] for r in rows[:max_rows]],
        ))
    parts.append("</body></html>")
    return "\n".join(parts)

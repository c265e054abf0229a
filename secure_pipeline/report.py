"""A self-contained, human-readable HTML report of one run's evidence."""

from __future__ import annotations

import base64
from html import escape
from pathlib import Path
from typing import Any, Mapping, Sequence

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#222}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0} td,th{border:1px solid #ddd;padding:.3rem .6rem;text-align:left;vertical-align:top}
.passed,.allow{color:#1a7f37;font-weight:600} .failed,.deny{color:#cf222e;font-weight:600}
.warning{color:#9a6700;font-weight:600} .skipped{color:#666} code{font-size:.9em} img{max-width:100%}
"""


def _status(value: str) -> str:
    return f'<span class="{escape(value)}">{escape(value)}</span>'


def table(headers: list[str], rows: list[list[str]]) -> str:
    """An HTML table; cells are trusted HTML, so escape text before passing it."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _metrics(metrics: dict[str, float]) -> str:
    return ", ".join(f"{escape(k)}={v:.4g}" for k, v in metrics.items()) or "—"


def page_head(title: str) -> str:
    """The opening of a self-contained report page, with the shared style."""
    return f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title><style>{_STYLE}</style></head><body>"


def checks_table(checks: Mapping[str, Mapping[str, Any]]) -> str:
    """The data gate's checks as a table: status, summary, number of flagged rows, metrics."""
    return table(
        ["check", "status", "summary", "flagged rows", "metrics"],
        [[escape(name), _status(c["status"]), escape(c["summary"]), str(len(c.get("rows", []))), _metrics(c.get("metrics", {}))]
         for name, c in checks.items()],
    )


def _images(images: Mapping[str, Sequence[Path]]) -> str:
    """PNG plots of the model-evaluation stages, embedded so the report stays one self-contained file."""
    parts = []
    for stage, paths in images.items():
        for path in paths:
            data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
            parts.append(f"<figure style='display:inline-block;margin:.5rem'><img alt='{escape(stage)}: {escape(Path(path).stem)}' "
                         f"src='data:image/png;base64,{data}' style='max-width:32rem'><figcaption>{escape(stage)}: {escape(Path(path).stem)}</figcaption></figure>")
    return "".join(parts)


def render(evidence: dict[str, Any], *, max_findings: int = 200, images: Mapping[str, Sequence[Path]] | None = None) -> str:
    """Render the evidence document: decision, data checks, flagged rows, model, signature, plots."""
    policy = evidence.get("policy", {})
    decision = policy.get("decision", "not evaluated")
    dataset = evidence["dataset"]
    parts = [
        page_head("secure-pipeline report"),
        f"<h1>secure-pipeline report: {escape(evidence['model'].get('name', 'model'))}</h1>",
        f"<p>Decision: {_status(decision)} · created {escape(evidence['created'])} · "
        f"policy <code>{escape(policy.get('policy_digest', '—'))}</code></p>",
    ]
    if policy.get("violations"):
        parts.append("<h2>Violated rules</h2>")
        parts.append(table(["rule", "message"], [[f"<code>{escape(v['rule'])}</code>", escape(v["message"])] for v in policy["violations"]]))
    if policy.get("warnings"):
        parts.append("<h2>Warnings</h2>")
        parts.append(table(["rule", "message"], [[f"<code>{escape(v['rule'])}</code>", escape(v["message"])] for v in policy["warnings"]]))
    parts.append("<h2>Dataset</h2>")
    parts.append(table(["path", "sha256", "rows", "target"], [[escape(dataset["path"]), f"<code>{escape(dataset['sha256'])}</code>", str(dataset["rows"]), escape(dataset["target"])]]))
    handling = evidence["handling"]
    parts.append(
        f"<p>Flagged rows: <b>{escape(handling['on_flagged'])}</b>; rows dropped before training: {handling['rows_dropped']}; "
        f"columns dropped: {escape(', '.join(handling['columns_dropped']) or 'none')}</p>"
    )
    parts.append("<h2>Data gate</h2>")
    checks = evidence["data"]["checks"]
    parts.append(checks_table(checks))
    findings = [(name, f) for name, c in checks.items() for f in c.get("findings", [])]
    if findings:
        parts.append(f"<h2>Findings (first {min(len(findings), max_findings)} of {len(findings)})</h2>")
        parts.append(table(
            ["check", "row", "column", "detector", "score", "reason"],
            [[escape(name), escape(str(f.get("row", ""))), escape(str(f.get("column", ""))), escape(str(f.get("detector", ""))),
              f"{f['score']:.3g}" if "score" in f else "", escape(f["reason"])] for name, f in findings[:max_findings]],
        ))
    parts.append("<h2>Training and evaluation</h2>")
    parts.append(table(
        ["stage", "status", "summary", "metrics"],
        [[escape(name), _status(s["status"]), escape(s["summary"]), _metrics(s["metrics"])] for name, s in evidence["stages"].items()],
    ))
    champion = evidence.get("champion")
    if champion is not None:
        parts.append("<p>Champion: " + (escape(f"version {champion['version']} held @{champion['alias']}; compared on "
                     f"{champion.get('compared_on', 'nothing')}" + (f" — {champion['note']}" if champion.get("note") else ""))
                     if champion["present"] else escape(f"no model held @{champion['alias']}: this is the first candidate")) + "</p>")
    if images and any(images.values()):
        parts.append("<h2>Model evaluation plots</h2>" + _images(images))
    model, signature = evidence["model"], evidence["signature"]
    parts.append("<h2>Model and signature</h2>")
    parts.append(table(["model URI", "format", "digest", "scan", "signed", "signer"], [[
        escape(model.get("uri", "")), escape(model["format"]), f"<code>{escape(model['digest'])}</code>",
        _status("passed" if model["scan"]["clean"] else "failed"), _status("passed" if signature["present"] else "failed"),
        f"<code>{escape(signature['signer'])}</code>",
    ]]))
    parts.append(table(["file", "digest"], [[escape(k), f"<code>{escape(v)}</code>"] for k, v in model["files"].items()]))
    parts.append("<h2>Tools</h2>" + table(["tool", "version"], [[escape(k), escape(v)] for k, v in evidence["tools"].items()]))
    parts.append("</body></html>")
    return "\n".join(parts)

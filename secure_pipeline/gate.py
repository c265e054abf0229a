"""The data gate: run the configured data checks and shape their results as the data report."""

from __future__ import annotations

from typing import Any, Callable

from secure_pipeline.config import Config
from secure_pipeline.stage import Context, Stage, StageResult, load_stage

REPORT_SCHEMA = "secure-pipeline/data-report/v1"
REQUIRED_CHECKS = ("schema", "label_noise", "poisoning", "pii")


def load_checks(config: Config) -> list[Stage]:
    """Instantiate every data check named in `config.gate.checks`, validating its settings."""
    return [load_stage(name, config.stage_section(name), source=config.source) for name in config.gate.checks]


def run_checks(
    context: Context, stages: list[Stage], on_result: Callable[[StageResult], None] = lambda result: None
) -> dict[str, StageResult]:
    """Run the data checks in order, recording each result in the context, and return them."""
    for stage in stages:
        context.progress(f"data gate: {stage.name}")
        result = stage.run(context)
        context.results[stage.name] = result
        on_result(result)
    return {stage.name: context.results[stage.name] for stage in stages}


def check_json(result: StageResult) -> dict[str, Any]:
    """One check in the contract's shape: status, summary, rows, metrics (+ columns, findings)."""
    entry: dict[str, Any] = {
        "status": result.status,
        "summary": result.summary,
        "rows": result.rows,
        "metrics": {k: float(v) for k, v in result.metrics.items()},
    }
    if result.columns or result.name == "pii":
        entry["columns"] = result.columns
    entry["findings"] = [
        {k: v for k, v in vars(f).items() if v is not None} for f in result.findings
    ]
    if result.details:
        entry["details"] = dict(result.details)
    return entry


def verdict(report: dict[str, Any], source: str) -> str:
    """The gate's one-line verdict; when it failed, the checks that failed and what to do next."""
    head = f"data gate {'PASSED' if report['passed'] else 'FAILED'} for {source} ({report['rows']} rows, {report['dataset_digest']})"
    if report["passed"]:
        return head
    failed = [name for name, check in report["checks"].items() if check["status"] == "failed"]
    return (f"{head}: {', '.join(failed)} failed. Each check's summary above says why; next: fix or remove the listed "
            "rows, pass --reference with trusted data of the same kind (a baseline makes the checks decisive), tune "
            "the checks' settings in --config, or accept the risk with a waiver of rule data_gate.failed")


def baseline_json(context: Context) -> dict[str, Any]:
    """The baselines the checks could judge against: the trusted reference and the verified champion evidence."""
    champion = context.champion
    return {
        "reference_rows": None if context.reference is None else len(context.reference),
        "champion": None if champion is None else {
            "version": champion["version"], "run_id": champion["run_id"], "evidence_verified": context.baseline is not None,
        },
    }


def data_report(
    results: dict[str, StageResult], *, rows: int, dataset_digest: str, baseline: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The contract's data report; `passed` is false when any check failed. Each check's
    `details.baseline` says what it judged against (stages that use none leave it out)."""
    checks = {name: check_json(result) for name, result in results.items()}
    for name in REQUIRED_CHECKS:  # a check that did not run is reported in the same shape as one that did
        checks.setdefault(name, check_json(StageResult(name=name, status="skipped", summary="not enabled in gate.checks")))
    report = {
        "schema": REPORT_SCHEMA,
        "passed": not any(c["status"] == "failed" for c in checks.values()),
        "rows": rows,
        "dataset_digest": dataset_digest,
        "checks": checks,
    }
    if baseline is not None:
        report["baseline"] = baseline
    return report

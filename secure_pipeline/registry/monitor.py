"""Monitor a promoted model: check a batch of new inputs (and labels) against the version's attested
training profile, and decide with the `monitoring` policy pack.

The version is verified first (`verification.check_verified`, as `load_verified` does). Its training
profile (the drift stage's reference profile of the training data, logged at release) must carry the
SHA-256 the attestation binds, so a swapped profile is refused. The batch is then checked for schema
(columns and numeric types against the profile), drift per column (the drift stage's KS/chi-square/PSI
against the profile), cheap poisoning signals (repeated rows; with labels, labels the model confidently
contradicts) and, with labels, the model's metrics against the attested ones. The report is logged as
a run of the `secure-pipeline-monitoring` experiment tagged with the version it monitored.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from secure_pipeline import data_io, policy, signing, tracking, verification
from secure_pipeline.errors import BadInputError, CheckFailedError
from secure_pipeline.stage import Context

SCHEMA = "secure-pipeline/monitor-report/v1"
PACK = "monitoring"
CONFIDENT = 0.9  # predicted probability at or above which a contradicted label counts as confident disagreement


@dataclass(frozen=True)
class MonitorOutcome:
    """The monitoring report (with the policy decision) and the monitoring run that logged it."""

    report: dict[str, Any]
    allow: bool
    run_id: str

    def to_json(self) -> dict[str, Any]:
        return {**self.report, "monitoring_run_id": self.run_id}


def attested_profile(verified: verification.VerifiedModel, workdir: Path) -> tuple[dict[str, Any], str, Path]:
    """The version's training profile (content, digest, local file), only when its bytes carry the
    digest its attestation binds."""
    from secure_pipeline_stages import drift

    predicate = (verified.attestation or {}).get("predicate", {})
    where = f"{verified.target} (version {verified.version})"
    expected = predicate.get("training_profile_sha256")
    if not expected:
        raise CheckFailedError(f"{where}: its attestation binds no training profile (released before profiles were attested); "
                               "release the model again to monitor it")
    path = tracking.download_run_artifacts(str(verified.run_id), [tracking.PROFILE_ARTIFACT], workdir / "profile")[tracking.PROFILE_ARTIFACT]
    if path is None or not path.is_file():
        raise CheckFailedError(f"{where}: the attested training profile {tracking.PROFILE_ARTIFACT} is missing from run {verified.run_id}")
    digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        raise CheckFailedError(f"{where}: the training profile was changed after it was attested ({digest[:23]}… is not {expected[:23]}…)")
    try:
        return drift.load_profile(path), digest, path
    except BadInputError as exc:  # signed but unreadable: the check fails, the caller did nothing wrong
        raise CheckFailedError(f"{where}: {exc}") from exc


def column_check(batch: pd.DataFrame, profile: dict[str, Any], target: str | None) -> dict[str, Any]:
    """Columns of the profile missing from the batch (the target only when labels are given), extra
    columns, columns with no value at all (drift cannot test them), and numeric profile columns that
    are not numeric in the batch."""
    from secure_pipeline_stages import drift

    expected = {c: entry for c, entry in profile["columns"].items() if c != profile.get("target") or target}
    present = {str(c) for c in batch.columns}
    empty = [c for c, entry in expected.items() if c in present and entry.get("kind") != "empty" and batch[c].isna().all()]
    mismatch = [{"column": c, "expected": "numeric"} for c, entry in expected.items()
                if c in present and c not in empty and entry.get("kind") == "numeric" and drift.numeric_values(batch[c]) is None]
    return {"missing": [c for c in expected if c not in present], "extra": sorted(present - set(profile["columns"])), "empty": empty,
            "type_mismatch": mismatch}



def drift_check(batch: pd.DataFrame, profile_path: Path, target: str, labelled: bool, workdir: Path) -> dict[str, Any]:
    """The drift stage run on the batch against the saved profile: per-column tests and drifted columns."""
    from secure_pipeline_stages import drift

    stage = drift.DriftStage(drift.DriftSettings(profile=profile_path, include_target=labelled))
    result = stage.run(Context(data=batch, target=target, workdir=workdir / "drift"))
    return {"status": result.status, "summary": result.summary, "drifted_columns": list(result.details.get("drifted_columns", [])),
            "drifted_share": float(result.metrics.get("drifted_share", 0.0)), "columns_tested": int(result.metrics.get("columns_tested", 0)),
            "columns": dict(result.details.get("columns", {}))}


def model_input(model: Any, batch: pd.DataFrame) -> pd.DataFrame | None:
    """The batch as the model's raw feature columns (categories as text, as at training); None when one is missing."""
    from secure_pipeline.features import FeatureColumns, as_text_categories

    steps = getattr(model, "named_steps", {})
    if "preprocess" in steps:
        groups = {name: tuple(columns) for name, _, columns in steps["preprocess"].transformers_ if name in ("numeric", "categorical")}
        columns = FeatureColumns(groups.get("numeric", ()), groups.get("categorical", ()), ())
    else:
        columns = FeatureColumns(tuple(str(c) for c in getattr(model, "feature_names_in_", ())), (), ())
    if not columns.used or any(c not in batch.columns for c in columns.used):
        return None
    return as_text_categories(batch, columns)


def label_check(model: Any, batch: pd.DataFrame, target: str, released: dict[str, float]) -> tuple[dict[str, Any], float | None]:
    """The model's metrics on the labelled batch against the attested ones, and the share of labels it
    contradicts with probability >= CONFIDENT (None without probabilities)."""
    from secure_pipeline_stages.evaluate import held_out_scores

    rows = batch[batch[target].notna()]
    x = model_input(model, rows)
    if x is None or rows.empty:
        return {"measured": False, "note": "the batch lacks the model's feature columns or labelled rows", "released": released}, None
    y = rows[target].to_numpy()
    if not set(np.unique(y)) <= set(model.classes_):
        unknown = sorted(map(str, set(np.unique(y)) - set(model.classes_)))[:5]
        raise BadInputError(f"--target {target}: labels {unknown} are not classes the model knows ({[str(c) for c in model.classes_]})")
    scores = held_out_scores(model, x, rows[target])
    confident = None
    if hasattr(model, "predict_proba"):
        proba = model.predict_proba(x)
        contradicted = (model.classes_[proba.argmax(axis=1)] != y) & (proba.max(axis=1) >= CONFIDENT)
        confident = float(contradicted.mean())
    return {"measured": True, "rows": int(len(rows)), "batch": scores, "released": released,
            "drop": {k: released[k] - v for k, v in scores.items() if k in released}}, confident


def _report(uri: str, verified: verification.VerifiedModel, batch_path: Path, batch: pd.DataFrame, batch_sha: str,
            profile: dict[str, Any], profile_sha: str, target: str | None) -> dict[str, Any]:
    predicate = (verified.attestation or {}).get("predicate", {})
    name = predicate.get("model_name", "")
    return {
        "schema": SCHEMA,
        "model": {"uri": uri, "name": name, "version": verified.version, "run_id": verified.run_id, "digest": verified.digest},
        "batch": {"path": str(batch_path), "sha256": batch_sha, "rows": int(len(batch)),
                  "columns": [str(c) for c in batch.columns], "target": target},
        "profile": {"sha256": profile_sha, "artifact": tracking.PROFILE_ARTIFACT, "rows": profile.get("rows"), "target": profile.get("target")},
    }


def monitor(batch_path: Path, uri: str, trust: signing.Trust, *, target: str | None = None, tracking_uri: str | None = None,
            policy_dir: Path | None = None) -> MonitorOutcome:
    """Verify the version `uri` names, check the batch against its attested profile, decide with the
    monitoring pack and log a monitoring run; bad input raises before anything is logged."""
    import mlflow.sklearn

    batch, batch_sha = data_io.read_dataset(Path(batch_path), what="batch")
    if target is not None:
        data_io.require_column(batch, target, Path(batch_path))
    if batch.empty:
        raise BadInputError(f"{batch_path}: the batch has no rows; nothing to monitor")
    policy.check(policy_dir, [PACK])
    verified = verification.check_verified(uri, trust, tracking_uri=tracking_uri)
    with tempfile.TemporaryDirectory(prefix="secure-pipeline-monitor-") as tmp:
        workdir = Path(tmp)
        profile, profile_sha, profile_path = attested_profile(verified, workdir)
        trained_target = str(profile.get("target") or "")
        if target is not None and target != trained_target:
            raise BadInputError(f"--target {target}: the model was trained to predict '{trained_target}'; name that column")
        report = _report(uri, verified, Path(batch_path), batch, batch_sha, profile, profile_sha, target)
        report["columns"] = column_check(batch, profile, target)
        report["drift"] = drift_check(batch, profile_path, trained_target, target is not None, workdir)
        report["poisoning"] = {"duplicate_share": float(batch.duplicated().mean()), "confident_disagreement": None}
        released = dict((verified.attestation or {}).get("predicate", {}).get("metrics", {}))
        report["metrics"] = {"measured": False, "note": "no labels (--target) given", "released": released}
        if target is not None:
            model = mlflow.sklearn.load_model(str(verified.local_path))  # the verified, scanned, audited copy, as load_verified loads it
            report["metrics"], report["poisoning"]["confident_disagreement"] = label_check(model, batch, target, released)
    decision = policy.evaluate(report, policy_dir, [PACK])
    report["policy"] = decision.to_json()
    report["decision"] = "allow" if decision.allow else "deny"
    run_id = tracking.log_monitoring_run(report)
    return MonitorOutcome(report, decision.allow, run_id)

"""The pipeline runner: loads data, runs the stages, logs every result to MLflow, decides, promotes.

Stages stay free of I/O; this module reads the data, renders progress through a callback, logs to
MLflow through `tracking`, signs through `signing` and decides through `policy`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from secure_pipeline import attestation, bom as ml_bom, data_io, demo, evidence as evidence_doc, gate, policy, report, scanning, signing, tracking
from secure_pipeline.policy import waivers as waivers_mod
from secure_pipeline.config import Config, load_config
from secure_pipeline.errors import BadInputError
from secure_pipeline.stage import Context, StageResult, load_stage

Progress = Callable[[str], None]
ATTESTATION_PREDICATE = attestation.PREDICATE_TYPE
DEMO_DIR = Path("secure-pipeline-demo")
ROW_CHECKS = ("schema", "label_noise", "poisoning")


def _silent(message: str) -> None:
    return None


@dataclass(frozen=True)
class RunOptions:
    """What the caller asked for; anything left None comes from the config file or the demo."""

    config: Path | None = None
    data: Path | None = None
    target: str | None = None
    reference: Path | None = None
    model_name: str | None = None
    alias: str | None = None
    key: Path | None = None
    policy: Path | None = None
    tracking_uri: str | None = None
    demo: str | None = None
    packs: tuple[str, ...] | None = None
    waivers: Path | None = None
    experiment: str | None = None


@dataclass(frozen=True)
class RunOutcome:
    """What happened: the evidence, whether the model was promoted, and where to look in MLflow."""

    evidence: dict[str, Any]
    promoted: bool
    model_name: str
    alias: str
    version: str | None
    run_id: str
    tracking_uri: str
    public_key: Path | None

    def to_json(self) -> dict[str, Any]:
        decision = self.evidence["policy"]
        return {
            "schema": "secure-pipeline/run-result/v1",
            "promoted": self.promoted,
            "decision": decision["decision"],
            "violations": decision["violations"],
            "model_name": self.model_name,
            "alias": self.alias,
            "version": self.version,
            "run_id": self.run_id,
            "tracking_uri": self.tracking_uri,
            "public_key": str(self.public_key) if self.public_key else None,
            "evidence": self.evidence,
        }


def demo_config() -> Config:
    """The bundled demo's configuration."""
    return load_config(Path(str(files("secure_pipeline") / "demo-config.yaml")))


def _settings(options: RunOptions) -> tuple[Config, Path, str, Path | None]:
    """Resolve config, data path, target and reference; the demo fills in what is missing."""
    use_demo = options.demo is not None or (options.data is None and options.config is None)
    config = demo_config() if use_demo and options.config is None else load_config(options.config)
    if use_demo and options.data is None:
        data = demo.write(DEMO_DIR / "data", options.demo or "clean")
    else:
        data = options.data or config.data.path
    if data is None:
        raise BadInputError(f"{config.source}: no training data; pass --data FILE or set data.path")
    target = options.target or config.data.target
    if not target:
        raise BadInputError(f"{config.source}: no target column; pass --target COLUMN or set data.target")
    return config, Path(data), target, options.reference or config.data.reference


def _stages_for(config: Config) -> tuple[list[Any], list[Any]]:
    """Instantiate every stage up front, so a bad stage setting fails before any work."""
    data_stages = gate.load_checks(config)
    model_stages = [load_stage(n, config.stage_section(n), source=config.source) for n in config.model_stages]
    return data_stages, model_stages


def _signer(config: Config, key: Path | None, progress: Progress) -> tuple[signing.Signer, Path | None]:
    """The configured signer and matching public key; with none configured, loud development keys."""
    settings = config.signing
    if settings.method == "sigstore":
        token = os.environ.get(settings.identity_token_env) if settings.identity_token_env else None
        keyless = signing.Signer(method="sigstore", identity_token=token, use_staging=settings.use_staging, hash_algorithm=settings.hash)
        return signing.with_identity_token(keyless), None
    if settings.method == "pkcs11":
        token_signer = signing.Signer(method="pkcs11", pkcs11_uri=settings.pkcs11_uri, module_paths=settings.pkcs11_modules,
                                      certificate=settings.certificate, cert_chain=settings.cert_chain, hash_algorithm=settings.hash)
        signing.check_pkcs11(token_signer)  # fail now when the extra or the URI is missing
        return token_signer, settings.public_key
    password = signing.password_from_env(settings.password_env)
    private = key or settings.private_key
    if private is None and settings.method == "key":
        private, public = signing.create_dev_keys(settings.dev_key_dir)
        progress(
            f"WARNING: no signing key configured; using DEVELOPMENT keys in {settings.dev_key_dir}/ "
            f"(public key: {public}). Do not use them in production: set signing.private_key or pass --key."
        )
        return signing.Signer(private_key=private, hash_algorithm=settings.hash), public
    signer = signing.Signer(method=settings.method, private_key=private, password=password, certificate=settings.certificate,
                            cert_chain=settings.cert_chain, hash_algorithm=settings.hash)
    signer.identity()  # fail now on a missing or malformed key or certificate
    return signer, settings.public_key


def _read(data_path: Path, target: str, reference: Path | None) -> tuple[pd.DataFrame, str, pd.DataFrame | None]:
    """The data, the SHA-256 of the bytes it was parsed from, and the reference table."""
    frame, digest = data_io.read_dataset(data_path)
    data_io.require_column(frame, target, data_path)
    ref = data_io.read_table(reference, what="reference") if reference else None
    return frame, digest, ref


def _check_finite_features(frame: pd.DataFrame, target: str, config: Config, data_path: Path) -> None:
    """inf/-inf in a feature column is refused before any check runs: scikit-learn estimators (the
    data gate's and the trained model's) refuse it, and silently imputing it would change the data."""
    features = frame.drop(columns=[target, *config.data.exclude], errors="ignore").select_dtypes("number")
    infinite = [str(c) for c in features.columns if np.isinf(features[c].to_numpy(dtype=float, na_value=np.nan)).any()]
    if infinite:
        raise BadInputError(
            f"{data_path}: feature column(s) {infinite} hold inf/-inf, which scikit-learn estimators refuse; "
            "replace them with finite values (or empty cells for missing ones), or list the columns in data.exclude"
        )


def _check_classifier_target(frame: pd.DataFrame, target: str, config: Config, data_path: Path) -> None:
    """A continuous target for the train stage's classifier is refused before the data gate runs."""
    from secure_pipeline.features import looks_like_regression

    if "train" in config.model_stages and looks_like_regression(frame[target]):
        raise BadInputError(
            f"{data_path}: target column '{target}' looks continuous ({frame[target].nunique()} distinct numeric values), "
            "but the train stage fits a classifier; pass a column of class labels to --target, or bin this one into classes first"
        )


def scan_data(
    data: Path,
    target: str,
    *,
    reference: Path | None = None,
    config: Config | None = None,
    progress: Progress = _silent,
    log_to_mlflow: bool = False,
) -> dict[str, Any]:
    """Run the data gate on a CSV/Parquet file and return the contract's data report."""
    config = config or Config()
    frame, digest, ref = _read(Path(data), target, reference or config.data.reference)
    checks = gate.load_checks(config)
    _check_finite_features(frame, target, config, Path(data))
    with tempfile.TemporaryDirectory(prefix="secure-pipeline-") as workdir:
        context = _context(frame, ref, Path(data), target, config, Path(workdir), progress)
        if log_to_mlflow:
            tracking.connect(config.tracking.uri)
            with tracking.run(config.tracking.experiment, run_name=f"scan-data {Path(data).name}"):
                tracking.log_dataset(frame, Path(data), digest, target)
                results = gate.run_checks(context, checks, _logger())
                report_json = gate.data_report(results, rows=len(frame), dataset_digest=digest, baseline=gate.baseline_json(context))
                tracking.log_json(report_json, f"{tracking.ARTIFACT_DIR}/data-report.json")
                _log_data_report(report_json, results)
                tracking.set_tags({"data_gate": "passed" if report_json["passed"] else "failed"})
        else:
            results = gate.run_checks(context, checks)
            report_json = gate.data_report(results, rows=len(frame), dataset_digest=digest, baseline=gate.baseline_json(context))
    evidence_doc.validate(report_json, schema_file="data-report-v1.schema.json", source="data report")
    return report_json


def _context(frame: pd.DataFrame, ref: pd.DataFrame | None, path: Path, target: str, config: Config, workdir: Path, progress: Progress) -> Context:
    missing = [c for c in (*config.data.exclude, *config.data.sensitive) if c not in frame.columns]
    if missing:
        raise BadInputError(f"{path}: columns {missing} named in data.exclude/data.sensitive are not in the data; fix the config")
    return Context(
        data=frame,
        target=target,
        workdir=workdir,
        reference=ref,
        data_path=path,
        feature_exclude=tuple(config.data.exclude),
        sensitive=tuple(config.data.sensitive),
        seed=config.seed,
        n_jobs=config.n_jobs,
        progress=progress,
    )


def _logger() -> Callable[[StageResult], None]:
    """Log one stage result to the active MLflow run: namespaced metrics and its findings."""

    def log(result: StageResult) -> None:
        tracking.log_metrics(result.name, {**result.metrics, "failed": float(result.status == "failed")})
        if result.findings:
            tracking.log_json(gate.check_json(result), f"{tracking.ARTIFACT_DIR}/stages/{result.name}.json")
        for path in result.artifacts.values():
            tracking.log_file(path, f"{tracking.ARTIFACT_DIR}/stages/{result.name}")
        if result.outputs.get("reference_expectations"):
            with tempfile.TemporaryDirectory(prefix="secure-pipeline-suite-") as workdir:
                suite = _write_suite(result.outputs["reference_expectations"], Path(workdir))
                tracking.log_file(suite, f"{tracking.ARTIFACT_DIR}/stages/{result.name}")

    return log


def _write_suite(expectations: list[dict[str, Any]], workdir: Path) -> Path:
    """A stage's reference expectations (dicts with `type` between/in_set) as a Great Expectations suite file."""
    import json

    import great_expectations as gx
    import great_expectations.expectations as gxe

    items = [
        gxe.ExpectColumnValuesToBeBetween(column=e["column"], min_value=float(e["min_value"]), max_value=float(e["max_value"]))
        if e["type"] == "between" else gxe.ExpectColumnValuesToBeInSet(column=e["column"], value_set=list(e["value_set"]))
        for e in expectations
    ]
    suite = gx.ExpectationSuite(name="secure_pipeline_poisoning_reference", expectations=items)
    path = workdir / "reference-expectations.json"
    path.write_text(json.dumps(suite.to_json_dict(), default=str) + "\n", encoding="utf-8")
    return path


def _log_data_report(report_json: dict[str, Any], results: dict[str, StageResult]) -> None:
    """The HTML data report with plots, and the table of flagged rows (reasons and scores)."""
    from secure_pipeline import data_report

    tracking.log_text(data_report.render(report_json, results), f"{tracking.ARTIFACT_DIR}/data-report.html")
    rows = data_report.flagged_rows(results)
    if rows:
        tracking.log_table(rows, f"{tracking.ARTIFACT_DIR}/flagged-rows.json")


@dataclass(frozen=True)
class Handling:
    """What gate.on_flagged and the pii stage did to the data before training."""

    kept: pd.DataFrame
    rows_dropped: int
    columns_dropped: list[str]
    dropped_by_class: dict[str, dict[str, int]]  # {label: {"dropped": n, "rows": class size}}; classification targets only

    def message(self) -> str:
        """The progress line naming how many rows were dropped from each class."""
        per_class = ", ".join(f"'{label}' {c['dropped']:,} of {c['rows']:,} ({c['dropped'] / c['rows']:.1%})"
                              for label, c in self.dropped_by_class.items() if c["dropped"])
        return (f"gate: on_flagged=drop removed {self.rows_dropped:,} flagged rows before training"
                + (f"; by class: {per_class}" if per_class else ""))


def _by_class(labels: pd.Series, dropped: list[int]) -> dict[str, dict[str, int]]:
    """Rows dropped per class of a classification target (empty for a regression target)."""
    from secure_pipeline.features import looks_like_regression

    if looks_like_regression(labels.dropna()):
        return {}
    keys = labels.astype("string").fillna("<null>")
    totals, gone = keys.value_counts(), keys.iloc[dropped].value_counts()
    return {str(k): {"dropped": int(gone.get(k, 0)), "rows": int(n)} for k, n in totals.sort_index().items()}


def _handle_flagged(frame: pd.DataFrame, target: str, results: dict[str, StageResult], config: Config) -> Handling:
    """Apply gate.on_flagged to flagged rows and drop the PII columns the pii stage asks to drop."""
    columns = sorted({c for r in results.values() for c in r.details.get("drop_columns", [])})
    rows: set[int] = set()
    if config.gate.on_flagged == "drop":
        rows = {row for name in ROW_CHECKS if name in results and results[name].status in ("failed", "warning") for row in results[name].rows}
    kept = frame.drop(index=sorted(rows)).reset_index(drop=True)
    pii = results.get("pii")
    if pii is not None and pii.details.get("pseudonymize_columns"):
        from secure_pipeline import pseudonym

        key = pseudonym.key_from_env(pii.details["key_env"])
        kept = pseudonym.pseudonymize(kept, list(pii.details["pseudonymize_columns"]), key)
    by_class = _by_class(frame[target], sorted(rows)) if config.gate.on_flagged == "drop" else {}
    return Handling(kept, len(rows), columns, by_class)


def _trusted_types(model: Any) -> list[str]:
    """The types skops needs trusted to load this model, each reviewed against the scanner's allowlist."""
    import skops.io

    types = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    refused = [t for t in types if not scanning.is_allowed_global(*t.rsplit(".", 1))]
    if refused:
        raise BadInputError(f"config: the trained model needs untrusted types {refused}; use a scikit-learn estimator")
    return types


def run(options: RunOptions = RunOptions(), progress: Progress = _silent) -> RunOutcome:
    """The whole lifecycle. Everything that can be checked up front is checked before MLflow is touched."""
    config, data_path, target, reference = _settings(options)
    model_name = options.model_name or config.registry.model_name or data_path.stem
    alias = options.alias or config.registry.alias
    if alias.lower().startswith("v") and alias[1:].isdigit():
        raise BadInputError(f"--alias {alias}: aliases of the form v<number> are reserved by MLflow; choose another")
    frame, dataset_sha, ref = _read(data_path, target, reference)
    data_stages, model_stages = _stages_for(config)
    _check_classifier_target(frame, target, config, data_path)
    _check_finite_features(frame, target, config, data_path)
    packs = options.packs or config.policy.packs
    waivers = options.waivers or config.policy.waivers
    policy_dir = policy.check(options.policy or config.policy.dir, packs)
    waivers_mod.load(waivers)  # a missing or malformed waivers file fails before any work
    signer, public_key = _signer(config, options.key, progress)
    uri = tracking.connect(options.tracking_uri or config.tracking.uri)
    with tempfile.TemporaryDirectory(prefix="secure-pipeline-") as tmp, tracking.run(options.experiment or config.tracking.experiment, run_name=model_name) as active:
        workdir = Path(tmp)
        log = _logger()
        tracking.log_params({
            **{f"pipeline.{k}": v for k, v in {
                "data": data_path, "target": target, "model_name": model_name, "alias": alias,
                "on_flagged": config.gate.on_flagged, "checks": ",".join(config.gate.checks),
                "policy_dir": policy_dir, "signing": config.signing.method, "seed": config.seed,
            }.items()},
            **{f"{name}.{k}": v for name, section in config.stage_sections().items() for k, v in section.items()},
        })
        tracking.log_dataset(frame, data_path, dataset_sha, target)
        tracking.set_tags({"dataset_sha256": dataset_sha})  # on the run page from the start, even if a later step fails
        champion = _champion(model_name, alias, public_key, uri, progress)
        context = _context(frame, ref, data_path, target, config, workdir, progress)
        context.champion, context.baseline = champion, (champion or {}).get("evidence")
        results = gate.run_checks(context, data_stages, log)
        data_report = gate.data_report(results, rows=len(frame), dataset_digest=dataset_sha, baseline=gate.baseline_json(context))
        tracking.log_json(data_report, f"{tracking.ARTIFACT_DIR}/data-report.json")
        _log_data_report(data_report, results)

        handling = _handle_flagged(frame, target, results, config)
        if config.gate.on_flagged == "drop":
            progress(handling.message())
        profile_sha = log_training_profile(_profiled_columns(handling.kept, results, config, handling.columns_dropped), target, workdir, config.seed)
        train_context = _context(handling.kept, ref, data_path, target, config, workdir, progress)
        train_context.feature_exclude = (*train_context.feature_exclude, *handling.columns_dropped)
        train_context.champion = champion
        for stage in model_stages:
            progress(f"model: {stage.name}")
            result = stage.run(train_context)
            train_context.results[stage.name] = result
            log(result)

        trained = train_context.results["train"].outputs
        progress("package: logging the model in skops format")
        logged = tracking.log_model(trained["model"], _trusted_types(trained["model"]), trained["x_train"].head(5), workdir)
        progress("package: scanning the served model files")
        scan = scanning.scan_path(logged.local_copy)
        signature: dict[str, Any] = {"present": False, "method": config.signing.method, "signer": signer.identity()}
        if scan.clean:
            progress("sign: signing the model files the artifact store serves")
            signed = signing.sign_model(logged.local_copy, workdir / "model.sig", signer, ignore=[tracking.REGISTRY_META])
            tracking.log_file(signed.signature)
            model_digest, model_files = signed.digest, signed.files
            signature.update(present=True, bundle=tracking.SIGNATURE_ARTIFACT)
        else:  # an unsafe model is not signed, but the evidence still names what was refused
            model_digest, model_files = signing.hash_model(logged.local_copy, ignore=[tracking.REGISTRY_META])
        if public_key:
            tracking.log_file(public_key)

        document = {
            "schema": evidence_doc.SCHEMA,
            "created": evidence_doc.now(),
            "run": {"run_id": active.info.run_id, "experiment_id": active.info.experiment_id, "tracking_uri": tracking.redact(uri)},
            "dataset": {"path": str(data_path), "sha256": dataset_sha, "rows": len(frame), "columns": [str(c) for c in frame.columns], "target": target},
            "data": data_report,
            "handling": {"on_flagged": config.gate.on_flagged, "rows_dropped": handling.rows_dropped,
                         "rows_dropped_by_class": handling.dropped_by_class, "columns_dropped": handling.columns_dropped,
                         "columns_pseudonymized": list(results["pii"].details.get("pseudonymize_columns", [])) if "pii" in results else []},
            "stages": {name: _stage_json(r) for name, r in train_context.results.items()},
            "champion": _champion_json(train_context.champion, train_context.results.get("champion"), alias),
            "model": {"name": model_name, "model_id": logged.model_id, "uri": logged.uri, "format": "skops",
                      "digest": model_digest, "files": model_files, "scan": scan.to_json()},
            "signature": signature,
            "attestation": {"planned": signature["present"], "method": signature["method"], "signer": signature["signer"],
                            "predicate_type": attestation.PREDICATE_TYPE},
            "tools": evidence_doc.tool_versions(),
        }
        document["dataset"].update(profile_sha256=profile_sha, profile_artifact=tracking.PROFILE_ARTIFACT)
        evidence_doc.validate(document)
        progress("policy: evaluating the evidence")
        decision = policy.evaluate(document, policy_dir, packs, waivers)
        document["policy"] = decision.to_json()
        evidence_bytes = evidence_doc.canonical_bytes(document)
        evidence_path = workdir / "evidence.json"
        evidence_path.write_bytes(evidence_bytes)
        tracking.log_file(evidence_path)
        plots = {name: [p for p in r.artifacts.values() if Path(p).suffix == ".png"] for name, r in train_context.results.items()}
        tracking.log_text(report.render(document, images=plots), f"{tracking.ARTIFACT_DIR}/report.html")
        evidence_sha = f"sha256:{hashlib.sha256(evidence_bytes).hexdigest()}"
        progress("bom: writing the CycloneDX 1.6 ML-BOM")
        bom_bytes = ml_bom.canonical_bytes(ml_bom.build(document))
        bom_path = workdir / Path(tracking.BOM_ARTIFACT).name
        bom_path.write_bytes(bom_bytes)
        tracking.log_file(bom_path)
        if signature["present"]:
            progress("attest: signing the release attestation")
            predicate = attestation.build_predicate(
                document, evidence_sha256=evidence_sha, bom_sha256=ml_bom.sha256(bom_bytes), signer=signature["signer"],
                evidence_artifact=tracking.EVIDENCE_ARTIFACT, bom_artifact=tracking.BOM_ARTIFACT,
                profile_sha256=profile_sha, profile_artifact=tracking.PROFILE_ARTIFACT,
            )
            tracking.log_file(attestation.sign(workdir / "attestation.sig", signer, predicate))
        tags = {"decision": document["policy"]["decision"], "model_digest": model_digest, "dataset_sha256": dataset_sha,
                "policy_digest": decision.policy_digest, "policy_packs": ",".join(decision.packs),
                "signer": signature["signer"], "evidence_sha256": evidence_sha}
        tracking.set_tags(tags)
        tracking.set_note(_description(document, active.info.run_id, alias))
        version = None
        if decision.allow:
            progress(f"promote: registering {model_name} and moving @{alias}")
            version = tracking.register(logged.uri, model_name, alias, {**tags, "run_id": active.info.run_id},
                                        _description(document, active.info.run_id, alias), active.info.run_id,
                                        compared_with=train_context.champion["version"] if train_context.champion else None)
        else:
            tracking.end_blocked(model_name)
        return RunOutcome(document, decision.allow, model_name, alias, version, active.info.run_id, uri, public_key)


def _profiled_columns(kept: pd.DataFrame, results: dict[str, StageResult], config: Config, dropped: list[str]) -> pd.DataFrame:
    """The training data the profile describes: without excluded, dropped or pseudonymized columns
    (their raw values must not land in an artifact, and new batches arrive unpseudonymized)."""
    pii = results.get("pii")
    hidden = {*config.data.exclude, *dropped, *(pii.details.get("pseudonymize_columns", []) if pii is not None else [])}
    return kept[[c for c in kept.columns if c not in hidden]]


def log_training_profile(frame: pd.DataFrame, target: str, workdir: Path, seed: int = 0) -> str:
    """Profile the training data with the drift stage's profile code, log it as the run's
    `training-profile.json` artifact and return its `sha256:` digest (the attestation binds it)."""
    from secure_pipeline_stages import drift

    profile = {**drift.build_profile(frame, drift.DriftSettings(), seed), "target": target}
    data = (json.dumps(profile, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")
    path = workdir / Path(tracking.PROFILE_ARTIFACT).name
    path.write_bytes(data)
    tracking.log_file(path)
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _champion(model_name: str, alias: str, public_key: Path | None, uri: str, progress: Progress) -> dict[str, Any] | None:
    """The current alias holder, for the data gate's baseline and the champion stage: its logged metrics,
    and the model and its evidence document only when its signature and attestation verify with the
    configured public key."""
    from secure_pipeline import verification
    from secure_pipeline.errors import CheckFailedError

    holder = tracking.alias_holder(model_name, alias)
    if holder is None:
        return None
    logged = {k.removeprefix("evaluate."): v for k, v in tracking.run_metrics(holder.run_id).items() if k.startswith("evaluate.")}
    entry: dict[str, Any] = {"version": holder.version, "run_id": holder.run_id, "uri": f"models:/{model_name}/{holder.version}",
                             "metrics": logged, "model": None, "evidence": None, "note": ""}
    if public_key is None:
        entry["note"] = "no public key configured: the champion was not loaded; compared its logged metrics, which may come from other data"
        return entry
    progress(f"champion: verifying {model_name}@{alias} (version {holder.version}) before comparing with it")
    try:
        entry["model"], verified = verification.load_verified_release(entry["uri"], public_key, tracking_uri=uri)
        entry["evidence"] = verified.evidence
    except (CheckFailedError, BadInputError) as exc:
        entry["note"] = f"the champion did not verify ({exc}); compared its logged metrics instead"
    return entry


def _champion_json(champion: dict[str, Any] | None, result: StageResult | None, alias: str) -> dict[str, Any]:
    """The evidence's `champion` section: who held the alias and how the candidate compared."""
    if champion is None:
        return {"present": False, "alias": alias}
    entry = {"present": True, "alias": alias, "version": champion["version"], "run_id": champion["run_id"],
             "verified": champion.get("model") is not None, "logged_metrics": {k: float(v) for k, v in champion["metrics"].items()}}
    if result is not None and result.details.get("present"):
        entry.update(compared_on=result.details["compared_on"], metrics=result.details["champion_metrics"], status=result.status)
    if champion.get("note"):
        entry["note"] = champion["note"]
    return entry


def _stage_json(result: StageResult) -> dict[str, Any]:
    entry: dict[str, Any] = {"status": result.status, "summary": result.summary, "metrics": {k: float(v) for k, v in result.metrics.items()}}
    if result.details:
        entry["details"] = dict(result.details)
    return entry


def _description(document: dict[str, Any], run_id: str, alias: str) -> str:
    """Markdown for the model version and the run pages: the decision, what was checked, where the evidence is."""
    checks = document["data"]["checks"]
    metrics = document["stages"].get("evaluate", {}).get("metrics", {})
    allowed = document["policy"]["decision"] == "allow"
    lines = [
        f"**{'Promoted' if allowed else 'Blocked'} by secure-pipeline** — policy decision **{document['policy']['decision']}** "
        f"(policy `{document['policy']['policy_digest'][:19]}…`).",
        "",
        *[f"- ✗ `{v['rule']}`: {v['message']}" for v in document["policy"]["violations"]],
        f"- Source run: `{run_id}` — evidence in its artifacts: `{tracking.EVIDENCE_ARTIFACT}`, "
        f"`{tracking.ARTIFACT_DIR}/report.html`, signature `{tracking.SIGNATURE_ARTIFACT}`, attestation `{tracking.ATTESTATION_ARTIFACT}`.",
        f"- Dataset: `{document['dataset']['path']}` ({document['dataset']['rows']} rows), `{document['dataset']['sha256']}`.",
        "- Data gate: " + ", ".join(f"{n} {c['status']}" for n, c in checks.items()) + ".",
        "- Held-out metrics: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()) + ".",
        f"- Model digest: `{document['model']['digest']}`; signer `{document['signature']['signer']}`.",
        "",
        f"Verify before use: `secure-pipeline verify models:/{document['model']['name']}@{alias} --public-key SIGNER_PUBLIC_KEY_PEM`.",
    ]
    return "\n".join(lines)

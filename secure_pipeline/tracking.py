"""Everything secure-pipeline does with MLflow: runs, datasets, artifacts, models and the registry.

MLflow and network errors are turned into `InfrastructureError` here, at the boundary.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

if TYPE_CHECKING:  # pandas is imported by the callers; `sign`/`verify` start faster without it
    import pandas as pd

from secure_pipeline.errors import BadInputError, CheckFailedError, InfrastructureError, SecurePipelineError

ARTIFACT_DIR = "secure-pipeline"
SIGNATURE_ARTIFACT = f"{ARTIFACT_DIR}/model.sig"
ATTESTATION_ARTIFACT = f"{ARTIFACT_DIR}/attestation.sig"
EVIDENCE_ARTIFACT = f"{ARTIFACT_DIR}/evidence.json"
BOM_ARTIFACT = f"{ARTIFACT_DIR}/ml-bom.cdx.json"
PROFILE_ARTIFACT = f"{ARTIFACT_DIR}/training-profile.json"  # reference profile of the training data, bound by the attestation
MONITORING_EXPERIMENT = "secure-pipeline-monitoring"
TAG_PREFIX = "secure_pipeline."
DEFAULT_EXPERIMENT_ID = "0"  # MLflow's `Default`, where `mlflow run` puts a run when not told otherwise
REGISTRY_META = "registered_model_meta"  # written by MLflow into downloaded registry models


def quiet() -> None:
    """Keep MLflow's progress bars and INFO logs out of our output."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    for name in ("mlflow", "alembic", "great_expectations"):
        logging.getLogger(name).setLevel(logging.WARNING)


def resolve_uri(uri: str | None) -> str:
    """The tracking URI in force: explicit, else MLFLOW_TRACKING_URI, else MLflow's local sqlite store."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


# MLflow retries a failed HTTP request 7 times with exponential backoff and waits up to 120 s per
# request: a tracking server that dies mid-run was reported only ~500 s later. These bounds (the
# user's own environment settings win) make a dead server an exit 3 within about 10 s, and a hung one
# within a few minutes, while a slow artifact upload still has 60 s per request.
HTTP_LIMITS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
}


def connect(uri: str | None) -> str:
    """Point MLflow at the tracking store and check that it answers; raise `InfrastructureError` if not."""
    import mlflow

    quiet()  # library callers too: no download progress bars or INFO logs (the user's own settings win)
    uri = resolve_uri(uri)
    if uri.startswith("sqlite:///"):
        _initialise_sqlite(uri)
    if uri.startswith(("http://", "https://")):
        for name, value in HTTP_LIMITS.items():
            os.environ.setdefault(name, value)
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=10) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise InfrastructureError(
                f"tracking server {uri} unreachable ({reason}); start it or set MLFLOW_TRACKING_URI to a running server"
            ) from exc
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _initialise_sqlite(uri: str) -> None:
    """Create or migrate an embedded sqlite store under a file lock.

    Two processes opening a fresh `mlflow.db` at once race in MLflow's schema migration
    (`CommandError: Online migration expected to match one row`); the lock makes the second wait
    until the first has created the tables. Later calls only open the store MLflow has cached for
    the URI (the lock is taken each time, the migration happens once).
    """
    import fcntl

    import mlflow

    database = Path(uri.removeprefix("sqlite:///"))
    lock_path = database.with_name(database.name + ".lock")
    try:
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            with infrastructure_errors(f"opening the tracking store {uri}"):
                client = mlflow.MlflowClient(uri, registry_uri=uri)
                client.search_experiments(max_results=1)
                client.search_registered_models(max_results=1)
    except OSError as exc:
        raise InfrastructureError(f"tracking store {uri}: cannot lock {lock_path} ({exc.strerror}); check the folder's permissions") from exc


@contextlib.contextmanager
def infrastructure_errors(action: str) -> Iterator[None]:
    """Translate MLflow, network and file-system failures during `action` into `InfrastructureError`."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except SecurePipelineError:
        raise
    except MlflowException as exc:
        first = exc.message.splitlines()[0] if exc.message else str(exc)
        if _unreachable(exc):
            raise InfrastructureError(f"tracking server {_server()} unreachable while {action} ({_short(first)}); check that it is running and reachable") from exc
        raise InfrastructureError(f"MLflow failed while {action}: {first}") from exc
    except (OSError, ConnectionError) as exc:
        raise InfrastructureError(f"I/O failed while {action}: {exc}") from exc
    except _object_store_errors() as exc:
        raise InfrastructureError(f"artifact store failed while {action}: {exc}") from exc


def _object_store_errors() -> tuple[type[BaseException], ...]:
    """The errors of boto3/botocore (S3-compatible artifact stores written by the client), when installed."""
    try:
        from boto3.exceptions import Boto3Error
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return ()
    return (BotoCoreError, ClientError, Boto3Error)


def _unreachable(exc: BaseException) -> bool:
    """Whether an MLflow error comes from a server that did not answer (refused, reset, timed out)."""
    import requests

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
            return True
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    return "Max retries exceeded" in text or "Connection refused" in text or "Read timed out" in text


def _server() -> str:
    import mlflow

    return redact(mlflow.get_tracking_uri())


def redact(uri: str) -> str:
    """Drop credentials from a tracking URI before it goes into evidence or a message."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    if not (parts.username or parts.password):
        return uri
    return urlunsplit(parts._replace(netloc=(parts.hostname or "") + (f":{parts.port}" if parts.port else "")))


def _short(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@contextlib.contextmanager
def run(experiment: str, run_name: str | None = None) -> Iterator[Any]:
    """Start (or, under `mlflow run`, resume) an MLflow run in `experiment`."""
    import mlflow

    with infrastructure_errors("starting the run"):
        project_run = _project_run_in_default()
        if not os.environ.get("MLFLOW_RUN_ID"):
            mlflow.set_experiment(experiment)
        active = mlflow.start_run(run_name=run_name)
        if project_run:
            mlflow.MlflowClient().set_tag(project_run, "mlflow.note.content", f"secure-pipeline logged this project run in experiment "
                                          f"`{experiment}`, run `{active.info.run_id}`.")
            mlflow.MlflowClient().set_tag(project_run, f"{TAG_PREFIX}run_id", active.info.run_id)
    try:
        yield active
    except BaseException:
        with contextlib.suppress(Exception):  # the original failure is what the caller must see
            mlflow.end_run(status="FAILED")
        raise
    else:
        with infrastructure_errors("ending the run"):
            mlflow.end_run()


def end_blocked(run_name: str) -> None:
    """End the active run as the policy blocked it: status FAILED (as `mlflow run` shows the exit 1 of
    a block) and the run name `BLOCKED <run_name>`, so the runs table tells it from a promotion."""
    import mlflow

    with infrastructure_errors("marking the run blocked"):
        mlflow.set_tag("mlflow.runName", f"BLOCKED {run_name}")
        mlflow.end_run(status="FAILED")


def _project_run_in_default() -> str | None:
    """Under `mlflow run` without --experiment-name, MLflow created the run in the Default experiment:
    forget it (its id is returned, to point it at ours) so that the run starts in the configured experiment."""
    import mlflow

    run_id = os.environ.get("MLFLOW_RUN_ID")
    if not run_id or mlflow.MlflowClient().get_run(run_id).info.experiment_id != DEFAULT_EXPERIMENT_ID:
        return None
    del os.environ["MLFLOW_RUN_ID"]
    os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    return run_id


def log_monitoring_run(report: dict[str, Any]) -> str:
    """Log a monitoring report as a run of MONITORING_EXPERIMENT, tagged with the model version it
    checked (name, version, source run, digest) and the decision; returns the run id."""
    model = report["model"]
    with run(MONITORING_EXPERIMENT, run_name=f"monitor {model['name']} v{model['version']}") as active:
        set_tags({"monitored_model": model["name"], "monitored_version": str(model["version"]), "monitored_run_id": str(model["run_id"]),
                  "model_digest": model["digest"], "batch_sha256": report["batch"]["sha256"], "decision": report["decision"],
                  "drifted_columns": ",".join(report["drift"]["drifted_columns"])})
        log_metrics("drift", {"drifted_share": report["drift"]["drifted_share"], "columns_drifted": len(report["drift"]["drifted_columns"]),
                              "columns_tested": report["drift"]["columns_tested"]})
        if report["metrics"].get("measured"):
            log_metrics("batch", report["metrics"]["batch"])
        log_json(report, f"{ARTIFACT_DIR}/monitor-report.json")
        return str(active.info.run_id)


_REFUSED_KEY_CHARACTERS = re.compile(r"[^\w.\- ]")
MAX_KEY_LENGTH = 250  # MLflow's limit for metric and param keys


def mlflow_key(name: str) -> str:
    """`name` as a metric or param key MLflow accepts (letters, digits, `_ - . ` and spaces, at most
    250 characters). Other characters, e.g. of a column named `x'); DROP TABLE runs;--`, become `_`,
    and 8 hex digits of the original's SHA-256 keep two such names apart. Evidence keeps the original."""
    safe = _REFUSED_KEY_CHARACTERS.sub("_", name)
    if safe == name and len(name) <= MAX_KEY_LENGTH:
        return name
    return f"{safe[:MAX_KEY_LENGTH - 9]}_{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"


def log_params(params: dict[str, Any]) -> None:
    import mlflow

    with infrastructure_errors("logging params"):
        mlflow.log_params({mlflow_key(k): str(v)[:6000] for k, v in params.items()})


def log_metrics(prefix: str, metrics: dict[str, float]) -> None:
    """Log metrics namespaced by stage, e.g. `label_noise.issue_rate` (keys made acceptable by `mlflow_key`)."""
    import mlflow

    with infrastructure_errors("logging metrics"):
        mlflow.log_metrics({mlflow_key(f"{prefix}.{k}"): float(v) for k, v in metrics.items()})


def set_note(markdown: str) -> None:
    """The run's description in the MLflow UI (the `mlflow.note.content` tag)."""
    import mlflow

    with infrastructure_errors("describing the run"):
        mlflow.set_tag("mlflow.note.content", markdown)


def set_tags(tags: dict[str, str]) -> None:
    import mlflow

    with infrastructure_errors("tagging the run"):
        mlflow.set_tags({f"{TAG_PREFIX}{k}": v for k, v in tags.items()})


def log_dataset(frame: pd.DataFrame, path: Path, sha256: str, target: str) -> None:
    """Record the training data as an MLflow dataset input that carries its full SHA-256."""
    import mlflow

    with infrastructure_errors("logging the dataset"):
        dataset = mlflow.data.from_pandas(frame, source=str(Path(path).resolve()), name=Path(path).name, targets=target)
        mlflow.log_input(dataset, context="training", tags={"sha256": sha256, "path": str(path)})


def log_json(document: Any, artifact_file: str) -> None:
    import mlflow

    with infrastructure_errors(f"logging {artifact_file}"):
        mlflow.log_text(json.dumps(document, indent=2, sort_keys=True, default=str), artifact_file)


def log_table(records: list[dict[str, Any]], artifact_file: str) -> None:
    """A table (list of records) as an MLflow table artifact, viewable in the UI."""
    import mlflow
    import pandas as pd

    with infrastructure_errors(f"logging {artifact_file}"):
        mlflow.log_table(data=pd.DataFrame.from_records(records), artifact_file=artifact_file)


def log_text(text: str, artifact_file: str) -> None:
    import mlflow

    with infrastructure_errors(f"logging {artifact_file}"):
        mlflow.log_text(text, artifact_file)


def log_file(path: Path, artifact_dir: str = ARTIFACT_DIR) -> None:
    import mlflow

    with infrastructure_errors(f"logging {Path(path).name}"):
        mlflow.log_artifact(str(path), artifact_dir)


@dataclass(frozen=True)
class LoggedModel:
    """A model logged to the run: its `models:/m-...` URI, id and a fresh local copy of its files."""

    uri: str
    model_id: str
    local_copy: Path


def log_model(model: Any, trusted_types: list[str], input_example: pd.DataFrame, workdir: Path) -> LoggedModel:
    """Log with the sklearn flavor in skops format, then download exactly what the store serves."""
    import mlflow

    with infrastructure_errors("logging the model"):
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            serialization_format="skops",
            skops_trusted_types=trusted_types,
            input_example=input_example,
        )
    return LoggedModel(info.model_uri, info.model_id, download_model(info.model_uri, workdir / "served-model"))


def download_model(uri: str, destination: Path) -> Path:
    """Download a model's files into a fresh directory (never the store's own folder)."""
    import mlflow

    destination.mkdir(parents=True, exist_ok=False)
    with infrastructure_errors(f"downloading {uri}"):
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(destination)))


def download_run_artifacts(run_id: str, artifacts: Sequence[str], destination: Path) -> dict[str, Path | None]:
    """Download the named files of a run's artifacts into `destination`: one run lookup and one listing
    per folder, then one transfer per file. An artifact is None only when the store's listing says the
    run does not have it; a store that cannot be reached or read raises `InfrastructureError`, so an
    outage is never mistaken for "the run never logged it"."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    destination.mkdir(parents=True, exist_ok=True)
    found: dict[str, Path | None] = dict.fromkeys(artifacts)
    with infrastructure_errors(f"reading the artifacts of run {run_id}"):
        try:
            run = mlflow.MlflowClient().get_run(run_id) if run_id else None
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            run = None  # the store answered: there is no such run, so it holds no artifacts
        if run is None:
            return found
        repository = get_artifact_repository(run.info.artifact_uri)
        listed: dict[str, set[str]] = {}
        for artifact in artifacts:
            folder = artifact.rpartition("/")[0]
            if folder not in listed:
                listed[folder] = {entry.path for entry in repository.list_artifacts(folder or None) if not entry.is_dir}
            found[artifact] = Path(repository.download_artifacts(artifact, str(destination))) if artifact in listed[folder] else None
    return found


def register(model_uri: str, name: str, alias: str, tags: dict[str, str], description: str, run_id: str, *,
             compared_with: str | None) -> str:
    """Register a version, tag it, then move the alias, last, and only while the alias still points
    where the run's champion comparison saw it (`compared_with`, None: no champion). Roll back the
    version on an infrastructure failure; a moved alias leaves the version registered, unpromoted."""
    import mlflow

    client = mlflow.MlflowClient()
    with infrastructure_errors(f"registering {name}"):
        version = mlflow.register_model(model_uri, name, tags={f"{TAG_PREFIX}{k}": v for k, v in tags.items()}).version
    try:
        with infrastructure_errors(f"promoting {name} version {version}"):
            client.update_model_version(name, version, description=description)
            holder = alias_holder(name, alias)
            if (holder.version if holder else None) != compared_with:
                now = f"version {holder.version}" if holder else "no version (it was removed)"
                raise ChampionMovedError(
                    f"{name}@{alias} moved to {now} while this run compared against "
                    f"{'version ' + compared_with if compared_with else 'no champion'}; version {version} is registered with its "
                    "evidence but not promoted; rerun to compare against the new champion"
                )
            client.set_registered_model_alias(name, alias, version)
    except InfrastructureError:
        with contextlib.suppress(Exception):
            client.delete_model_version(name, version)
        raise
    return str(version)


class ChampionMovedError(CheckFailedError):
    """Another run moved the alias after this run's champion comparison: promoting would skip that comparison."""


@dataclass(frozen=True)
class RegisteredVersion:
    """A registry entry as the verifier sees it."""

    name: str
    version: str
    run_id: str
    source: str
    tags: dict[str, str]
    aliases: tuple[str, ...]


def parse_models_uri(uri: str) -> tuple[str, str | None, str | None]:
    """Split `models:/NAME/VERSION` or `models:/NAME@ALIAS` into (name, version, alias)."""
    body = uri.removeprefix("models:/")
    if "@" in body:
        name, alias = body.rsplit("@", 1)
        if name and alias:
            return name, None, alias
    elif "/" in body:
        name, version = body.rsplit("/", 1)
        if name and version.isdigit():
            return name, version, None
    raise BadInputError(f"{uri}: not a registry model URI; use models:/NAME/VERSION or models:/NAME@ALIAS")


def find_version(uri: str) -> RegisteredVersion:
    """Look a registry URI up; a missing model, version or alias is the caller's mistake (exit 2)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    name, version, alias = parse_models_uri(uri)
    client = mlflow.MlflowClient()
    try:
        found = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}:
            raise BadInputError(f"{uri}: no such registered model version or alias in {mlflow.get_tracking_uri()}") from exc
        raise InfrastructureError(f"MLflow failed while looking up {uri}: {exc.message}") from exc
    return RegisteredVersion(
        name=name,
        version=str(found.version),
        run_id=found.run_id,
        source=found.source,
        tags=dict(found.tags),
        aliases=tuple(found.aliases),
    )


def fresh_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def alias_holder(name: str, alias: str) -> RegisteredVersion | None:
    """The version that holds `name@alias` now, or None when the model or the alias does not exist yet."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        found = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"}:
            return None
        raise InfrastructureError(f"MLflow failed while looking up {name}@{alias}: {exc.message}") from exc
    return RegisteredVersion(name=name, version=str(found.version), run_id=found.run_id, source=found.source,
                             tags=dict(found.tags), aliases=tuple(found.aliases))


def run_metrics(run_id: str) -> dict[str, float]:
    """The latest value of every metric logged on a run."""
    import mlflow

    with infrastructure_errors(f"reading the metrics of run {run_id}"):
        return dict(mlflow.MlflowClient().get_run(run_id).data.metrics)


def registered_aliases() -> dict[str, dict[str, str]]:
    """Every registered model of the registry and its aliases (alias -> version), all pages."""
    import mlflow

    client = mlflow.MlflowClient()
    found: dict[str, dict[str, str]] = {}
    token = None
    with infrastructure_errors("listing the registered models"):
        while True:
            page = client.search_registered_models(max_results=200, page_token=token)
            for model in page:
                found[model.name] = {alias: str(version) for alias, version in (model.aliases or {}).items()}
            token = page.token
            if not token:
                return found


def version_numbers(name: str) -> list[str]:
    """Every version of a registered model, newest first."""
    import mlflow

    client = mlflow.MlflowClient()
    numbers: list[int] = []
    token = None
    escaped = name.replace("'", "\\'")
    with infrastructure_errors(f"listing the versions of {name}"):
        while True:
            page = client.search_model_versions(f"name='{escaped}'", max_results=200, page_token=token)
            numbers += [int(v.version) for v in page]
            token = page.token
            if not token:
                return [str(n) for n in sorted(set(numbers), reverse=True)]


def set_alias(name: str, alias: str, version: str) -> None:
    import mlflow

    with infrastructure_errors(f"moving {name}@{alias} to version {version}"):
        mlflow.MlflowClient().set_registered_model_alias(name, alias, version)


def delete_alias(name: str, alias: str) -> None:
    import mlflow

    with infrastructure_errors(f"deleting {name}@{alias}"):
        mlflow.MlflowClient().delete_registered_model_alias(name, alias)


def set_version_tag(name: str, version: str, key: str, value: str) -> None:
    """Tag a model version with `secure_pipeline.KEY`."""
    import mlflow

    with infrastructure_errors(f"tagging {name} version {version}"):
        mlflow.MlflowClient().set_model_version_tag(name, version, f"{TAG_PREFIX}{key}", value)


def ensure_webhook(name: str, url: str, events: list[str], secret: str) -> tuple[str, bool]:
    """Create the registry webhook called `name`, or update it to this URL, events and secret and
    make it active; returns (webhook id, created)."""
    import mlflow

    client = mlflow.MlflowClient()
    with infrastructure_errors(f"registering the webhook {name} for {url}"):
        token = None
        while True:
            page = client.list_webhooks(max_results=100, page_token=token)
            existing = next((hook for hook in page if hook.name == name), None)
            if existing is not None:
                client.update_webhook(existing.webhook_id, url=url, events=events, secret=secret, status="ACTIVE")
                return existing.webhook_id, False
            token = page.token
            if not token:
                return client.create_webhook(name, url, events=events, secret=secret).webhook_id, True

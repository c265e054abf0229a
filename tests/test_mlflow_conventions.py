"""MLflow conventions (issue #12 §5), against real sqlite stores: a blocked run is FAILED and named
`BLOCKED <model>` under `secure-pipeline run` and under `mlflow run` alike, `mlflow run .` logs in the
configured experiment, the dataset's SHA-256 is on the run page, `--version`, each data-gate warning
printed once, and the library keeps MLflow's download progress bars off the terminal."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from secure_pipeline import demo

from conftest import BIN, cli

REPO = Path(__file__).resolve().parents[1]
EXPERIMENT = "conventions"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path | str]:
    """A small, quick pipeline: 400 demo rows (learnable), the same rows with random labels (the baseline
    pack denies their held-out accuracy), only the pii check and the train/evaluate stages."""
    root = tmp_path_factory.mktemp("conventions")
    frame = demo.clean(400)
    frame.to_csv(root / "good.csv", index=False)
    frame[demo.TARGET] = np.random.default_rng(1).integers(0, 2, len(frame))
    frame.to_csv(root / "noise.csv", index=False)
    config = {"data": {"target": demo.TARGET, "exclude": [demo.SENSITIVE], "sensitive": [demo.SENSITIVE]},
              "gate": {"checks": ["pii"]}, "pii": {"action": "drop"}, "model_stages": ["train", "evaluate"],
              "registry": {"model_name": "conventions"}, "tracking": {"experiment": EXPERIMENT}}
    (root / "pipeline.yaml").write_text(yaml.safe_dump(config))
    return {"root": root, "uri": f"sqlite:///{root / 'mlflow.db'}"}


def runs(uri: str, experiment: str) -> list:
    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"]) if found else []


def sha256(path: Path) -> str:
    return f"sha256:{hashlib.sha256(path.read_bytes()).hexdigest()}"


def test_version_is_the_installed_distribution() -> None:
    result = subprocess.run([sys.executable, "-m", "secure_pipeline", "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert result.stdout.strip() == f"secure-pipeline {version('secure-pipeline')}"


def test_promoted_then_blocked_run_under_secure_pipeline_run(project: dict) -> None:
    root, uri = project["root"], project["uri"]
    env = {"MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}
    promoted = cli("run", "--config", str(root / "pipeline.yaml"), "--data", str(root / "good.csv"), cwd=root, env=env)
    assert promoted.returncode == 0, promoted.stderr[-3000:]
    pii_summary = next(line for line in promoted.stderr.splitlines() if "data gate pii: warning" in line).split(" — ", 1)[1]
    assert promoted.stderr.count(pii_summary) == 1  # the policy's restatement of the same warning is not printed again
    blocked = cli("run", "--config", str(root / "pipeline.yaml"), "--data", str(root / "noise.csv"), cwd=root, env=env)
    assert blocked.returncode == 1 and "BLOCKED" in blocked.stderr, blocked.stderr[-3000:]

    first, second = runs(uri, EXPERIMENT)[-2:]
    assert (first.info.status, first.info.run_name, first.data.tags["secure_pipeline.decision"]) == ("FINISHED", "conventions", "allow")
    assert (second.info.status, second.info.run_name, second.data.tags["secure_pipeline.decision"]) == ("FAILED", "BLOCKED conventions", "deny")
    for run, data in ((first, "good.csv"), (second, "noise.csv")):
        assert run.data.tags["secure_pipeline.dataset_sha256"] == sha256(root / data)
        assert sha256(root / data) in run.data.tags["mlflow.note.content"]


def test_blocked_under_mlflow_run_looks_the_same_and_lands_in_the_configured_experiment(project: dict) -> None:
    """`mlflow run .` without --experiment-name: MLflow creates its run in Default; the pipeline's run is
    in the config's experiment, and the Default run points at it."""
    root, uri = project["root"], project["uri"]
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MLFLOW_TRACKING_URI": uri}
    for leaked in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_REGISTRY_URI"):
        env.pop(leaked, None)
    result = subprocess.run(
        [sys.executable, "-m", "mlflow", "run", str(REPO), "--env-manager", "local",
         "-P", f"config={root / 'pipeline.yaml'}", "-P", f"data={root / 'noise.csv'}"],
        cwd=root, env=env, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode != 0 and "BLOCKED" in result.stderr, result.stderr[-3000:]
    blocked = runs(uri, EXPERIMENT)[-1]
    assert (blocked.info.status, blocked.info.run_name, blocked.data.tags["secure_pipeline.decision"]) == ("FAILED", "BLOCKED conventions", "deny")
    project_run = runs(uri, "Default")[-1]
    assert project_run.data.tags["secure_pipeline.run_id"] == blocked.info.run_id
    assert "secure_pipeline.decision" not in project_run.data.tags  # nothing of the pipeline's was logged there


def test_experiment_option_overrides_the_config(project: dict, store: str) -> None:
    from secure_pipeline import runner

    root = project["root"]
    outcome = runner.run(runner.RunOptions(config=root / "pipeline.yaml", data=root / "good.csv", experiment="chosen"))
    assert outcome.promoted
    assert [r.info.run_id for r in runs(store, "chosen")] == [outcome.run_id]
    assert runs(store, EXPERIMENT) == []


SCRIPT = """
import pathlib, sys, tempfile
import mlflow
uri, how = sys.argv[1], sys.argv[2]
if how == "library":
    from secure_pipeline import tracking
    tracking.connect(uri)
else:
    mlflow.set_tracking_uri(uri)
mlflow.set_experiment("bars")
with mlflow.start_run() as run:
    folder = pathlib.Path(tempfile.mkdtemp())
    for i in range(3):
        (folder / f"f{i}.txt").write_text("x")
    mlflow.log_artifacts(str(folder), "a")
mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="a", dst_path=tempfile.mkdtemp())
"""


def test_library_callers_get_no_download_progress_bars(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "MLFLOW_RUN_ID")}
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def stderr(how: str) -> str:
        done = subprocess.run([sys.executable, "-c", SCRIPT, uri, how], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stderr

    assert "Downloading artifacts" in stderr("plain")  # MLflow's default, so the check below can fail
    assert "Downloading artifacts" not in stderr("library")

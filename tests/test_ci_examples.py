"""The CI/CD examples run: the `run:` steps of examples/github-actions.yml and the `script:` lines
of examples/gitlab-ci.yml are executed locally, in order, by bash, with local substitutions for
what only a hosted runner has (a local key instead of keyless OIDC, a sqlite tracking store)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml
from jsonschema import Draft7Validator

from secure_pipeline import demo

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SARIF_SCHEMA = json.loads((REPO / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())
BIN = Path(sys.executable).parent


def github_steps(workflow: dict) -> list[tuple[str, str]]:
    """(job, command) for every `run:` step, jobs in `needs` order; installs are skipped (the test venv has the package)."""
    ordered = sorted(workflow["jobs"], key=lambda job: len(workflow["jobs"][job].get("needs", [])))
    return [(job, step["run"]) for job in ordered for step in workflow["jobs"][job]["steps"]
            if "run" in step and "pip install" not in step["run"]]


def gitlab_steps(pipeline: dict) -> list[tuple[str, str]]:
    jobs = [name for stage in pipeline["stages"] for name, job in pipeline.items() if isinstance(job, dict) and job.get("stage") == stage]
    return [(job, line) for job in jobs for line in pipeline[job]["script"]]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A checkout-like directory: the examples, demo data, a local-key config and a sqlite store."""
    root = tmp_path_factory.mktemp("ci")
    (root / "examples").mkdir()
    for name in ("waivers.yaml",):
        (root / "examples" / name).write_text((EXAMPLES / name).read_text())
    data = demo.write(root / "secure-pipeline-demo" / "data", "clean")
    config = yaml.safe_load((EXAMPLES / "pipeline-keyless.yaml").read_text())
    demo_config = yaml.safe_load((REPO / "secure_pipeline" / "demo-config.yaml").read_text())
    # Local substitutions: a development key instead of keyless OIDC, and only the quick model stages.
    config["signing"] = {"method": "key", "dev_key_dir": "../secure-pipeline-dev-keys"}
    config["data"]["path"] = f"../{Path(data).relative_to(root).as_posix()}"
    config["model_stages"] = ["train", "evaluate"]
    config["label_noise"] = {**config.get("label_noise", {}), "folds": 3}
    config["schema"] = demo_config["schema"]
    (root / "examples" / "pipeline-local.yaml").write_text(yaml.safe_dump(config))
    return {"root": root, "uri": f"sqlite:///{root / 'mlflow.db'}"}


def run_steps(steps: list[tuple[str, str]], root: Path, env: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    results = []
    for job, command in steps:
        result = subprocess.run(["bash", "-eo", "pipefail", "-c", command], cwd=root, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{job}: {command}\n{result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr
        results.append(result)
    return results


def base_env(workspace: dict, variables: dict) -> dict[str, str]:
    env = {**os.environ, **{k: str(v) for k, v in variables.items() if "${{" not in str(v)}}
    env.update(PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", MLFLOW_TRACKING_URI=workspace["uri"],
               PIPELINE_CONFIG="examples/pipeline-local.yaml",
               VERIFY_ARGS=f"--public-key {workspace['root'] / 'secure-pipeline-dev-keys' / 'dev-public-key.pem'}")
    env.pop("MLFLOW_RUN_ID", None)
    return env


def check_outputs(root: Path) -> None:
    sarif = json.loads((root / "policy.sarif").read_text())
    assert not list(Draft7Validator(SARIF_SCHEMA).iter_errors(sarif))
    run = json.loads((root / "run.json").read_text())
    assert run["promoted"] is True and run["decision"] == "allow"
    policy = run["evidence"]["policy"]
    assert policy["packs"] == ["baseline", "gdpr"]
    assert policy["waivers_file"].endswith("waivers.yaml")
    suites = ET.parse(root / "policy-junit.xml").getroot()
    assert suites.tag == "testsuites" and int(suites.get("tests")) >= 15 and suites.get("failures") == "0"
    verified = json.loads((root / "verified.json").read_text())
    assert verified["digest"] == run["evidence"]["model"]["digest"]


def test_github_actions_workflow_runs_locally(workspace: dict) -> None:
    workflow = yaml.safe_load((EXAMPLES / "github-actions.yml").read_text())
    gate = workflow["jobs"]["gate"]
    assert gate["permissions"]["id-token"] == "write" and gate["permissions"]["security-events"] == "write"
    assert any(step.get("uses", "").startswith("github/codeql-action/upload-sarif") for step in gate["steps"])
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == "gate" and any("secure-pipeline verify" in step.get("run", "") for step in deploy["steps"])
    steps = github_steps(workflow)
    run_steps(steps, workspace["root"], base_env(workspace, workflow["env"]))
    check_outputs(workspace["root"])


def test_gitlab_pipeline_runs_locally(workspace: dict) -> None:
    pipeline = yaml.safe_load((EXAMPLES / "gitlab-ci.yml").read_text())
    assert pipeline["gate"]["id_tokens"]["SIGSTORE_ID_TOKEN"]["aud"] == "sigstore"
    assert pipeline["gate"]["artifacts"]["reports"]["junit"] == "policy-junit.xml"
    root = workspace["root"]
    for name in ("policy.sarif", "policy-junit.xml", "run.json", "verified.json"):
        (root / name).unlink(missing_ok=True)
    results = run_steps(gitlab_steps(pipeline), root, base_env(workspace, pipeline["variables"]))
    check_outputs(root)
    assert "VERIFIED" in results[-2].stderr


def test_keyless_config_is_valid_and_asks_for_sigstore() -> None:
    from secure_pipeline.config import load_config

    config = load_config(EXAMPLES / "pipeline-keyless.yaml")
    assert config.signing.method == "sigstore"
    assert config.policy.packs == ("baseline", "gdpr")
    assert config.policy.waivers == EXAMPLES / "waivers.yaml"
    assert re.search(r"id-token: write", (EXAMPLES / "github-actions.yml").read_text())

"""The CI/CD examples run as copied: every `run:` step of examples/github-actions.yml and every
`before_script:`/`script:` line of examples/gitlab-ci.yml is executed verbatim, in job order, by bash
(as the hosted runners do: `bash -eo pipefail`, later GitHub steps only when their `if:` says
`always()`; a GitLab job's lines in one shell), in a fresh copy of the repository as a clone has it
(tracked and unignored files only: no generated demo data, no keys, no store).

Only the environment differs from a hosted runner, never the command text:
- `MLFLOW_TRACKING_URI` (a CI secret/variable) is a sqlite store in the test's directory; the
  credentials variables are empty, as GitHub renders unset secrets.
- Keyless Sigstore signing needs the runner's OIDC identity, so `PIPELINE_CONFIG` names a copy of
  examples/pipeline-keyless.yaml, next to it, whose `signing` section alone is replaced by a local EC
  key (asserted below), and the deploy job's `VERIFY_ARGS` names the matching public key instead of
  the workflow identity.
- `pip install .` runs as written, in a venv made for the test with `--system-site-packages` (plus
  the test interpreter's own site-packages), so the dependencies are already satisfied: pip builds the
  checkout with its build backend from the configured index and installs only secure-pipeline itself
  (asserted), instead of downloading the dependency tree as a fresh runner does.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml
from jsonschema import Draft7Validator

from secure_pipeline import demo

from conftest import write_keys

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
SARIF_SCHEMA = json.loads((REPO / "tests" / "data" / "sarif-schema-2.1.0.json").read_text())
CI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv that sees the test interpreter's packages (the dependencies), without secure-pipeline's checkout on its path."""
    root = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(root)], check=True, timeout=300)
    if sys.prefix != sys.base_prefix:  # the tests run in a venv: its packages are not the base's "system" ones
        purelib = next(root.glob("lib/python*/site-packages"))
        (purelib / "test-interpreter.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return root / "bin"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The repository as a fresh clone has it, with the local-key variant of the pipeline config beside the keyless one."""
    root = tmp_path / "repo"
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, listed):
        if (REPO / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, root / name)
    keys = write_keys(tmp_path / "keys", "ci")
    config = yaml.safe_load((root / "examples" / "pipeline-keyless.yaml").read_text())
    config["signing"] = {"method": "key", "private_key": str(keys.private)}
    (root / "examples" / "pipeline-local-key.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "public.pem").write_bytes(keys.public.read_bytes())
    return root


def environment(bin_dir: Path, checkout: Path, variables: dict, **overrides: str) -> dict[str, str]:
    """What the CI would set: the file's own variables, the CI secrets/variables, and the runner's PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update({k: str(v) for k, v in variables.items() if "${{" not in str(v)})
    env.update({name: "" for name in CI_VARIABLES})
    env.update(PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", MLFLOW_TRACKING_URI=f"sqlite:///{checkout.parent / 'mlflow.db'}",
               PIPELINE_CONFIG="examples/pipeline-local-key.yaml", VERIFY_ARGS=f"--public-key {checkout.parent / 'public.pem'}")
    env.update(overrides)
    return env


def shell(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", command], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=1800)
    assert "Traceback" not in result.stdout + result.stderr, f"{command}\n{result.stderr[-3000:]}"
    return result


def run_github(workflow: dict, cwd: Path, env: dict[str, str]) -> dict[str, list[tuple[str, int | None, str]]]:
    """Each job's `run:` steps as GitHub runs them: (command, exit code or None when skipped, output).
    After a failed step only `if: always()` steps run; a job runs only when the jobs it needs succeeded."""
    outcome: dict[str, list[tuple[str, int | None, str]]] = {}
    for name in sorted(workflow["jobs"], key=lambda job: len(workflow["jobs"][job].get("needs", []))):
        job = workflow["jobs"][name]
        needs = [job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs", [])
        if any(code for need in needs for _, code, _ in outcome[need]) or any(not outcome[need] for need in needs):
            outcome[name] = []
            continue
        steps, failed = [], False
        for step in (s for s in job["steps"] if "run" in s):
            if failed and "always()" not in str(step.get("if", "")):
                steps.append((step["run"], None, ""))
                continue
            result = shell(step["run"], cwd, {**env, **{k: str(v) for k, v in job.get("env", {}).items() if k not in env}})
            steps.append((step["run"], result.returncode, result.stdout + result.stderr))
            failed = failed or result.returncode != 0
        outcome[name] = steps
    return outcome


def run_gitlab(pipeline: dict, cwd: Path, env: dict[str, str], jobs: list[str] | None = None) -> dict[str, subprocess.CompletedProcess[str]]:
    """Each job's before_script + script lines in one shell, in stage order; a later stage runs only when the earlier passed."""
    ordered = [name for stage in pipeline["stages"] for name, job in pipeline.items() if isinstance(job, dict) and job.get("stage") == stage]
    results: dict[str, subprocess.CompletedProcess[str]] = {}
    for name in jobs or ordered:
        if any(r.returncode for r in results.values()):
            break
        job = pipeline[name]
        results[name] = shell("\n".join([*job.get("before_script", []), *job["script"]]), cwd, env)
    return results


def installed_only_secure_pipeline(output: str) -> None:
    installing = [line for line in output.splitlines() if line.startswith("Installing collected packages:")]
    assert installing == ["Installing collected packages: secure-pipeline"], output[-3000:]


def check_reports(root: Path) -> dict:
    run = json.loads((root / "run.json").read_text())
    assert run["promoted"] is True and run["decision"] == "allow"
    policy = run["evidence"]["policy"]
    assert policy["packs"] == ["baseline", "gdpr"] and policy["waivers_file"].endswith("waivers.yaml")
    assert run["evidence"]["dataset"]["sha256"].startswith("sha256:")
    sarif = json.loads((root / "policy.sarif").read_text())
    assert not list(Draft7Validator(SARIF_SCHEMA).iter_errors(sarif))
    suites = ET.parse(root / "policy-junit.xml").getroot()
    assert suites.tag == "testsuites" and int(suites.get("tests")) >= 15 and suites.get("failures") == "0"
    verified = json.loads((root / "verified.json").read_text())
    assert verified["digest"] == run["evidence"]["model"]["digest"]
    return run


def test_github_actions_workflow_runs_as_written(venv: Path, checkout: Path) -> None:
    workflow = yaml.safe_load((checkout / "examples" / "github-actions.yml").read_text())
    gate = workflow["jobs"]["gate"]
    assert gate["permissions"]["id-token"] == "write" and gate["permissions"]["security-events"] == "write"
    upload = next(step for step in gate["steps"] if step.get("uses", "").startswith("github/codeql-action/upload-sarif"))
    assert "hashFiles('policy.sarif')" in upload["if"]  # no SARIF after an exit 2: the upload is skipped, not failed
    for name in CI_VARIABLES:
        assert workflow["env"][name] == f"${{{{ secrets.{name} }}}}"  # both jobs: the same server and credentials
    outcome = run_github(workflow, checkout, environment(venv, checkout, workflow["env"]))
    for job, steps in outcome.items():
        assert steps, f"{job} did not run"
        for command, code, output in steps:
            assert code == 0, f"{job}: {command}\n{output[-3000:]}"
    installed_only_secure_pipeline(outcome["gate"][0][2])
    check_reports(checkout)
    assert "deploying the verified model sha256:" in outcome["deploy"][-1][2]


def test_gitlab_pipeline_runs_as_written(venv: Path, checkout: Path) -> None:
    pipeline = yaml.safe_load((checkout / "examples" / "gitlab-ci.yml").read_text())
    assert pipeline["gate"]["id_tokens"]["SIGSTORE_ID_TOKEN"]["aud"] == "sigstore"
    assert pipeline["gate"]["artifacts"]["when"] == "always" and pipeline["gate"]["artifacts"]["reports"]["junit"] == "policy-junit.xml"
    results = run_gitlab(pipeline, checkout, environment(venv, checkout, pipeline["variables"]))
    assert list(results) == ["gate", "deploy"]
    for job, result in results.items():
        assert result.returncode == 0, f"{job}\n{result.stderr[-3000:]}"
    installed_only_secure_pipeline(results["gate"].stdout)
    check_reports(checkout)
    assert "VERIFIED" in results["deploy"].stderr and "deploying the verified model sha256:" in results["deploy"].stdout


def test_github_report_step_survives_bad_input(venv: Path, checkout: Path) -> None:
    """An exit 2 before any work leaves no run.json: the JUnit step says so instead of crashing, deploy does not run."""
    workflow = yaml.safe_load((checkout / "examples" / "github-actions.yml").read_text())
    outcome = run_github(workflow, checkout, environment(venv, checkout, workflow["env"], PIPELINE_CONFIG="examples/no-such.yaml"))
    codes = [code for _, code, _ in outcome["gate"]]
    assert codes == [0, 0, 2, 0], outcome["gate"]
    assert "error: examples/no-such.yaml: config file not found" in outcome["gate"][2][2]
    assert "no run.json" in outcome["gate"][3][2]
    assert outcome["deploy"] == [] and not (checkout / "run.json").exists()


def test_gitlab_gate_keeps_its_exit_code_and_deploy_needs_the_tracking_uri(venv: Path, checkout: Path) -> None:
    pipeline = yaml.safe_load((checkout / "examples" / "gitlab-ci.yml").read_text())
    bad = run_gitlab(pipeline, checkout, environment(venv, checkout, pipeline["variables"], PIPELINE_CONFIG="examples/no-such.yaml"))
    assert list(bad) == ["gate"] and bad["gate"].returncode == 2, bad["gate"].stderr[-3000:]
    assert "error: examples/no-such.yaml: config file not found" in bad["gate"].stderr
    unset = run_gitlab(pipeline, checkout, environment(venv, checkout, pipeline["variables"], MLFLOW_TRACKING_URI=""), jobs=["deploy"])
    assert unset["deploy"].returncode == 2 and "set the CI/CD variable MLFLOW_TRACKING_URI" in unset["deploy"].stdout
    assert not (checkout / "mlflow.db").exists() and not (checkout.parent / "mlflow.db").exists()


def test_example_config_is_self_contained_and_keyless() -> None:
    from secure_pipeline.config import load_config

    config = load_config(EXAMPLES / "pipeline-keyless.yaml")
    assert config.signing.method == "sigstore"
    assert config.policy.packs == ("baseline", "gdpr") and config.policy.waivers == EXAMPLES / "waivers.yaml"
    assert config.data.path == EXAMPLES / "data" / "loans.csv"
    assert subprocess.run(["git", "check-ignore", "-q", "examples/data/loans.csv"], cwd=REPO).returncode == 1  # a clone has it
    assert config.data.path.read_text() == demo.clean().to_csv(index=False, lineterminator="\n")  # the bundled demo's bytes


def test_gitlab_gate_writes_evidence_and_sarif_when_the_policy_blocks(venv: Path, checkout: Path) -> None:
    """A stricter policy (POLICY_PACKS adds `--policy` with the bundled packs, baseline's minimum accuracy
    raised to 0.999) denies: exit 1, and the job still wrote run.json, evidence.json, SARIF and JUnit
    before failing; deploy does not run."""
    pipeline = yaml.safe_load((checkout / "examples" / "gitlab-ci.yml").read_text())
    strict = checkout.parent / "strict-policies"
    shutil.copytree(REPO / "policies", strict, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    thresholds = json.loads((strict / "baseline" / "data.json").read_text())
    thresholds["thresholds"]["baseline"]["min_metrics"]["accuracy"] = 0.999
    (strict / "baseline" / "data.json").write_text(json.dumps(thresholds))
    packs = f"--policy {strict} {pipeline['variables']['POLICY_PACKS']}"
    results = run_gitlab(pipeline, checkout, environment(venv, checkout, pipeline["variables"], POLICY_PACKS=packs))
    assert list(results) == ["gate"] and results["gate"].returncode == 1, results["gate"].stderr[-3000:]
    run = json.loads((checkout / "run.json").read_text())
    assert run["decision"] == "deny" and not run["promoted"]
    assert "evaluation.below_minimum" in {v["rule"] for v in run["violations"]}
    assert json.loads((checkout / "evidence.json").read_text())["model"]["digest"] == run["evidence"]["model"]["digest"]
    sarif = json.loads((checkout / "policy.sarif").read_text())
    assert not list(Draft7Validator(SARIF_SCHEMA).iter_errors(sarif))
    assert "evaluation.below_minimum" in {result["ruleId"] for result in sarif["runs"][0]["results"]}
    assert int(ET.parse(checkout / "policy-junit.xml").getroot().get("failures")) >= 1

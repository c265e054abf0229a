"""The project files agree with each other: README commands, .ci/run, conda.yaml, MLproject."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import yaml

from secure_pipeline.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _readme_commands() -> list[str]:
    fenced = re.findall(r"^```(\w*)\n(.*?)^```", README, re.S | re.M)  # pair fences line by line, whatever the language
    blocks = [body for language, body in fenced if language in ("", "bash", "sh", "console")]
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip() and not line.strip().startswith("#")]


def test_readme_starts_with_the_two_setup_commands_and_ci_runs_the_test_one() -> None:
    commands = _readme_commands()
    demo_command, test_command = commands[0], commands[1]
    assert "secure-pipeline run" in demo_command and "pip install" in demo_command
    assert "pytest" in test_command and "pip install" in test_command
    assert test_command in (REPO / ".ci" / "run").read_text(encoding="utf-8")


def test_every_secure_pipeline_command_in_the_readme_parses() -> None:
    parser = build_parser()
    found = 0
    for line in _readme_commands():
        for part in re.split(r"&&|\|\|", line):
            words = shlex.split(part.strip())
            if words and words[0].endswith("secure-pipeline") and len(words) > 1 and words[1] != "--help":
                parser.parse_args(words[1:])
                found += 1
    assert found >= 6


def test_conda_env_matches_pyproject_dependencies() -> None:
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    conda = yaml.safe_load((REPO / "conda.yaml").read_text())
    pip = next(item["pip"] for item in conda["dependencies"] if isinstance(item, dict))
    assert [p for p in pip if p != "-e ."] == dependencies


def test_mlproject_main_entry_point_runs_the_cli() -> None:
    project = yaml.safe_load((REPO / "MLproject").read_text())
    main = project["entry_points"]["main"]
    assert "python -m secure_pipeline run" in main["command"]
    parser = build_parser()
    options = {f"--{name.replace('_', '-')}" for name in main["parameters"]}
    run_options = {o for a in parser._subparsers._group_actions[0].choices["run"]._actions for o in a.option_strings}
    assert options <= run_options

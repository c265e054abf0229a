"""Tests for the YAML run configuration: strict validation, clear errors, path resolution and
third-party stage sections (registered through a real entry point, not a mock)."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from secure_pipeline import gate
from secure_pipeline.config import Config, GateSettings, load_config, validate_section
from secure_pipeline.errors import BadInputError
from secure_pipeline.stage import Context, available_stages, load_stage


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(BadInputError) as raised:
        load_config(path)
    message = str(raised.value)
    assert "\n" not in message  # one line
    return message


# --------------------------------------------------------------------------------------------
# Valid files
# --------------------------------------------------------------------------------------------


def test_no_file_means_defaults() -> None:
    config = load_config(None)
    assert config == Config()
    assert config.gate.on_flagged == "fail"
    assert config.gate.checks == ("schema", "label_noise", "poisoning", "pii", "drift")
    assert config.registry.alias == "champion"


@pytest.mark.parametrize("text", ["", "# only a comment\n"], ids=["empty", "comment"])
def test_empty_file_means_defaults(tmp_path: Path, text: str) -> None:
    config = load_config(write(tmp_path / "c.yaml", text))
    assert config.gate == GateSettings()
    assert config.source == str(tmp_path / "c.yaml")


def test_the_bundled_demo_config_is_valid() -> None:
    from secure_pipeline.runner import demo_config

    config = demo_config()
    assert config.data.target == "approved"
    assert config.stage_section("label_noise") == {"p_value": 0.01}
    # Its stage sections validate against the stages' own settings models.
    for name in config.stage_sections():
        load_stage(name, config.stage_section(name), source=config.source)


def test_values_are_read(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "c.yaml", """
        data: {target: label, exclude: [id], sensitive: [gender]}
        gate: {checks: [schema, pii], on_flagged: drop}
        registry: {model_name: churn, alias: prod}
        seed: 7
        label_noise: {max_issue_rate: 0.05}
    """))
    assert config.data.target == "label"
    assert config.data.exclude == ("id",)
    assert config.gate.checks == ("schema", "pii")
    assert config.gate.on_flagged == "drop"
    assert config.registry.model_name == "churn" and config.registry.alias == "prod"
    assert config.seed == 7
    assert config.stage_section("label_noise") == {"max_issue_rate": 0.05}
    assert config.stage_section("poisoning") == {}


# --------------------------------------------------------------------------------------------
# Mistakes
# --------------------------------------------------------------------------------------------


def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "data: {target: y}\nbogus_section: 1\n")
    message = error_of(path)
    assert "'bogus_section'" in message
    assert str(path) in message
    assert "gate" in message  # lists the valid keys


def test_misspelled_core_section_is_named(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "c.yaml", "gates:\n  on_flagged: drop\n"))
    assert "'gates'" in message


def test_unknown_key_in_a_core_section_is_named(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "c.yaml", "gate:\n  on_flaged: drop\n"))
    assert "on_flaged" in message
    assert "gate" in message


def test_unknown_key_in_a_stage_section_fails_when_loading_the_config(tmp_path: Path) -> None:
    """A typo inside a stage section is caught by load_config, like a typo anywhere else."""
    message = error_of(write(tmp_path / "c.yaml", "label_noise:\n  bogus: 1\n"))
    assert "bogus" in message
    assert "label_noise" in message


def test_unknown_key_in_the_section_of_a_disabled_stage_is_not_silently_ignored(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "gate:\n  checks: [schema, pii]\npoisoning:\n  max_flaged_rate: 0.5\n")
    message = error_of(path)
    assert "max_flaged_rate" in message


def test_unknown_key_in_a_stage_section_is_named_by_the_stage_loader(tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as raised:
        load_stage("label_noise", {"bogus": 1}, source=str(tmp_path / "c.yaml"))
    message = str(raised.value)
    assert "bogus" in message and "label_noise" in message and "c.yaml" in message


def test_wrong_type_names_the_field_and_value(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "c.yaml", "gate:\n  on_flagged: maybe\n"))
    assert "gate.on_flagged" in message
    assert "maybe" in message


def test_wrong_type_of_a_scalar(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "c.yaml", "seed: not-a-number\n"))
    assert "seed" in message and "not-a-number" in message


def test_a_string_where_a_list_is_expected(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "c.yaml", "gate:\n  checks: schema\n"))
    assert "gate.checks" in message


def test_wrong_type_in_a_stage_section_is_named(tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as raised:
        load_stage("label_noise", {"folds": "many"}, source="c.yaml")
    assert "folds" in str(raised.value) and "many" in str(raised.value)


def test_a_section_that_is_not_a_mapping(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "c.yaml", "gate: drop\n"))
    assert "gate" in message


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "data:\n  target: y\ngate:\n  checks: [schema\n  on_flagged: drop\n")
    message = error_of(path)
    assert f"{path}:5" in message
    assert "YAML" in message


def test_yaml_tab_indentation_error(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "gate:\n\ton_flagged: drop\n")
    message = error_of(path)
    assert f"{path}:2" in message


def test_a_yaml_list_is_not_a_config(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "c.yaml", "- a\n- b\n"))
    assert "mapping" in message


def test_missing_config_file(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nope.yaml")
    assert "nope.yaml" in message and "not found" in message


def test_yaml_python_tags_are_refused(tmp_path: Path) -> None:
    """safe_load: a config file cannot construct Python objects."""
    message = error_of(write(tmp_path / "c.yaml", "seed: !!python/object/apply:os.getcwd []\n"))
    assert "c.yaml" in message


def test_validate_section_rejects_a_non_mapping() -> None:
    with pytest.raises(BadInputError, match="expected a mapping"):
        validate_section(GateSettings, ["drop"], "c.yaml: gate")


# --------------------------------------------------------------------------------------------
# Paths are relative to the config file, not to the working directory
# --------------------------------------------------------------------------------------------


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "project" / "conf"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(project / "c.yaml", f"""
        data: {{path: data/train.csv, reference: ../ref.parquet, target: y}}
        signing: {{private_key: keys/private.pem, public_key: {tmp_path}/abs/public.pem, dev_key_dir: dev}}
        policy: {{dir: rego}}
    """)
    config = load_config(Path("..") / "project" / "conf" / "c.yaml")
    base = project.resolve()
    assert config.data.path == base / "data" / "train.csv"
    assert config.data.reference == base / ".." / "ref.parquet"
    assert config.signing.private_key == base / "keys" / "private.pem"
    assert config.signing.public_key == tmp_path / "abs" / "public.pem"  # absolute: unchanged
    assert config.signing.dev_key_dir == base / "dev"
    assert config.policy.dir == base / "rego"
    assert path.is_file()


def test_non_path_strings_are_not_rewritten(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "c.yaml", "data: {target: label}\nregistry: {model_name: m}\n"))
    assert config.data.target == "label"
    assert config.registry.model_name == "m"


# --------------------------------------------------------------------------------------------
# Third-party stages: a section named after a registered stage is accepted
# --------------------------------------------------------------------------------------------

_PLUGIN = '''
from typing import ClassVar
from secure_pipeline.stage import Context, StageResult, StageSettings


class RowCountSettings(StageSettings):
    min_rows: int = 1


class RowCountStage:
    name: ClassVar[str] = "acme_row_count"
    settings_model: ClassVar[type[StageSettings]] = RowCountSettings

    def __init__(self, settings: RowCountSettings) -> None:
        self.settings = settings

    def run(self, context: Context) -> StageResult:
        rows = len(context.data)
        status = "passed" if rows >= self.settings.min_rows else "failed"
        return StageResult(self.name, status, f"{rows} rows (min {self.settings.min_rows})", metrics={"rows": rows})
'''


@pytest.fixture
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Install a third-party stage the way pip would: a module plus a dist-info with an entry point."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "acme_stages.py").write_text(_PLUGIN)
    info = site / "acme_stages-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-stages\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[secure_pipeline.stages]\nacme_row_count = acme_stages:RowCountStage\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield "acme_row_count"
    sys.modules.pop("acme_stages", None)


def test_a_registered_third_party_stage_section_is_accepted(tmp_path: Path, plugin: str) -> None:
    assert plugin in available_stages()
    config = load_config(write(tmp_path / "c.yaml", f"""
        gate: {{checks: [schema, {plugin}]}}
        {plugin}: {{min_rows: 5}}
    """))
    assert config.stage_section(plugin) == {"min_rows": 5}
    stages = gate.load_checks(config)
    assert [s.name for s in stages] == ["schema", plugin]
    frame = pd.DataFrame({"x": [1, 2, 3], "y": [0, 1, 0]})
    result = stages[1].run(Context(data=frame, target="y", workdir=tmp_path))
    assert result.status == "failed" and result.metrics == {"rows": 3}


def test_a_third_party_stage_section_is_validated_by_its_settings_model(tmp_path: Path, plugin: str) -> None:
    with pytest.raises(BadInputError) as raised:
        config = load_config(write(tmp_path / "c.yaml", f"gate: {{checks: [{plugin}]}}\n{plugin}: {{min_rowz: 5}}\n"))
        gate.load_checks(config)
    assert "min_rowz" in str(raised.value)


def test_the_same_section_is_unknown_without_the_plugin(tmp_path: Path) -> None:
    message = error_of(write(tmp_path / "c.yaml", "acme_row_count: {min_rows: 5}\n"))
    assert "'acme_row_count'" in message
    assert "label_noise" in message  # registered stages are listed as valid keys


def test_unknown_stage_in_gate_checks_is_named(tmp_path: Path) -> None:
    config = load_config(write(tmp_path / "c.yaml", "gate: {checks: [schema, label_nosie]}\n"))
    with pytest.raises(BadInputError) as raised:
        gate.load_checks(config)
    assert "label_nosie" in str(raised.value)
    assert "label_noise" in str(raised.value)  # lists the registered stages

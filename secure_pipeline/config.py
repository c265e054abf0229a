"""The run configuration: a YAML file validated on load, so a typo fails before any work starts.

Core sections are declared here; every other top-level key must be the name of a registered
stage, whose own settings model validates its section.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, TypeVar, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from secure_pipeline.errors import BadInputError

S = TypeVar("S", bound=BaseModel)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataSettings(_Section):
    """Where the training data is, which column is the label, which columns are not features."""

    path: Path | None = None
    target: str | None = None
    reference: Path | None = None
    exclude: tuple[str, ...] = ()
    sensitive: tuple[str, ...] = ()


class GateSettings(_Section):
    """Which data checks run, and what happens to the rows they flag before training."""

    checks: tuple[str, ...] = ("schema", "label_noise", "poisoning", "pii", "drift")
    on_flagged: Literal["fail", "drop", "warn"] = "fail"


class RegistrySettings(_Section):
    """Registered model name and the alias that promotion moves."""

    model_name: str | None = None
    alias: str = "champion"


class SigningSettings(_Section):
    """How the model and attestation are signed: an EC key (default), a key with an X.509
    certificate chain, keyless Sigstore (OIDC in CI) or a PKCS#11 token (the `pkcs11` extra)."""

    method: Literal["key", "certificate", "sigstore", "pkcs11"] = "key"
    private_key: Path | None = None
    public_key: Path | None = None
    password_env: str | None = None
    dev_key_dir: Path = Path("secure-pipeline-dev-keys")
    identity_token_env: str | None = None
    use_staging: bool = False
    certificate: Path | None = None
    cert_chain: tuple[Path, ...] = ()
    pkcs11_uri: str | None = None
    pkcs11_modules: tuple[str, ...] = ()
    hash: Literal["sha256", "blake3"] = "sha256"


class PolicySettings(_Section):
    """Directory of Rego packs (default: the bundled ones), which packs to evaluate, and a waivers file.

    `packs` default: `baseline` from the bundled directory, every pack of a custom `dir`.
    Bundled packs: baseline, gdpr, hipaa, pci-dss.
    """

    dir: Path | None = None
    packs: tuple[str, ...] | None = None
    waivers: Path | None = None


class TrackingSettings(_Section):
    """MLflow tracking server (default: MLFLOW_TRACKING_URI, else MLflow's local sqlite store)."""

    uri: str | None = None
    experiment: str = "secure-pipeline"


class Config(BaseModel):
    """The whole run configuration. Extra top-level keys are stage sections."""

    model_config = ConfigDict(extra="allow", frozen=True)

    data: DataSettings = Field(default_factory=DataSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    model_stages: tuple[str, ...] = ("train", "evaluate", "champion", "fairness", "robustness", "privacy", "explain")
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    signing: SigningSettings = Field(default_factory=SigningSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    seed: int = 0
    n_jobs: int | None = None
    source: str = "config"

    def stage_section(self, name: str) -> Mapping[str, Any]:
        """The raw settings of stage `name` (empty when the file has no such section)."""
        return (self.model_extra or {}).get(name) or {}

    def stage_sections(self) -> dict[str, Any]:
        """All stage sections given in the file, by stage name."""
        return dict(self.model_extra or {})


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest candidate to a mistyped name, else ''."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    """The settings model an annotation holds (`X`, `X | None`, `Optional[X]`), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_nested_model, get_args(annotation)) if m is not None), None)


def _model_at(model: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The settings model that holds the key at `loc` (the path of an unknown key), walking nested sections."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        nested = _nested_model(field.annotation) if field is not None else None
        if nested is None:
            return None
        model = nested
    return model


def _describe(error: ValidationError, where: str, model: type[BaseModel]) -> str:
    first = error.errors()[0]
    field = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        holder = _model_at(model, tuple(first["loc"]))
        if holder is None:
            return f"{where}: unknown key '{field}'; remove it"
        keys = sorted(set(holder.model_fields) - {"source"})
        hint = did_you_mean(str(first["loc"][-1]), keys)
        return f"{where}: unknown key '{field}'{hint}; valid keys here: {', '.join(keys)}"
    return f"{where}: '{field}': {first['msg']}; got {first.get('input')!r}"


def validate_section(model: type[S], values: Mapping[str, Any], where: str) -> S:
    """Validate one config section, turning pydantic's error into one `BadInputError` line."""
    if not isinstance(values, Mapping):
        raise BadInputError(f"{where}: expected a mapping of settings, got {type(values).__name__}")
    try:
        return model.model_validate(dict(values))
    except ValidationError as exc:
        raise BadInputError(_describe(exc, where, model)) from exc


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make relative paths in the file relative to the file's own directory."""
    for section, keys in {"data": ("path", "reference"), "signing": ("private_key", "public_key", "dev_key_dir", "certificate", "cert_chain"), "policy": ("dir", "waivers")}.items():
        values = raw.get(section)
        if isinstance(values, dict):
            for key in keys:
                if isinstance(values.get(key), str) and not Path(values[key]).is_absolute():
                    values[key] = str(base / values[key])
                elif isinstance(values.get(key), list):
                    values[key] = [str(base / v) if isinstance(v, str) and not Path(v).is_absolute() else v for v in values[key]]


def load_config(path: Path | None = None) -> Config:
    """Read and validate a YAML config file; no file means all defaults."""
    if path is None:
        return Config()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise BadInputError(f"{path}: config file not found; pass an existing YAML file to --config") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read config file ({exc})") from exc
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise BadInputError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)}); fix the syntax") from exc
    if not isinstance(raw, dict):
        raise BadInputError(f"{path}: the config must be a YAML mapping of sections")
    _resolve_paths(raw, Path(path).resolve().parent)
    raw["source"] = str(path)
    config = validate_section(Config, raw, str(path))
    from secure_pipeline.stage import available_stages

    stages = available_stages()
    for name in config.stage_sections():
        if name not in stages:
            valid = sorted(set(Config.model_fields) - {"source"} | set(stages))
            raise BadInputError(f"{path}: unknown key '{name}'{did_you_mean(name, valid)}; valid keys: {', '.join(valid)}")
    from secure_pipeline.stage import load_stage

    for name, section in config.stage_sections().items():
        load_stage(name, section or {}, source=str(path))
    return config

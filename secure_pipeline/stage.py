"""The small interface every stage implements, and the frozen result it returns.

Stages do their work through a library and return a `StageResult`. They never print, call
MLflow or exit: the runner logs results and renders progress, the CLI maps errors to exit codes.
Built-in and third-party stages are found through the `secure_pipeline.stages` entry-point group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Mapping, Protocol, runtime_checkable

import pandas as pd
from pydantic import BaseModel, ConfigDict

from secure_pipeline.errors import BadInputError

Status = Literal["passed", "failed", "warning", "skipped"]
ENTRY_POINT_GROUP = "secure_pipeline.stages"


class StageSettings(BaseModel):
    """Base of every stage's config section: unknown keys are an error, values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Finding:
    """One flagged row, column or file, with the reason and an optional score (higher = worse)."""

    reason: str
    row: int | None = None
    column: str | None = None
    file: str | None = None
    score: float | None = None
    detector: str | None = None


@dataclass(frozen=True)
class StageResult:
    """What a stage reports: status, summary, metrics, findings and the artifacts it wrote.

    `details` holds extra JSON-serializable evidence (e.g. the PII columns); `outputs` carries
    in-memory objects for later stages (e.g. the fitted model) and is never serialized.
    """

    name: str
    status: Status
    summary: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    findings: tuple[Finding, ...] = ()
    artifacts: Mapping[str, Path] = field(default_factory=dict)
    details: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> list[int]:
        """Sorted, unique row positions named by the findings."""
        return sorted({f.row for f in self.findings if f.row is not None})

    @property
    def columns(self) -> list[str]:
        """Columns named by the findings, in first-seen order."""
        return list(dict.fromkeys(f.column for f in self.findings if f.column is not None))


@dataclass
class Context:
    """What a stage may read: the data, the run's settings and the results of earlier stages."""

    data: pd.DataFrame
    target: str
    workdir: Path
    reference: pd.DataFrame | None = None
    data_path: Path | None = None
    feature_exclude: tuple[str, ...] = ()
    sensitive: tuple[str, ...] = ()
    seed: int = 0
    n_jobs: int | None = None
    results: dict[str, StageResult] = field(default_factory=dict)
    progress: Callable[[str], None] = lambda message: None
    # The model now holding the registry alias, looked up by the runner before the model stages:
    # {"version", "run_id", "uri", "metrics", "model" (loaded only after signature verification, else
    # None), "note"}; None when no model holds the alias yet.
    champion: Mapping[str, Any] | None = None
    # The verified evidence-v1 document of the last promoted version (its `data` key is the data report,
    # with `checks.<stage>.metrics`), for stages that judge a statistic against the champion's; None when
    # no version was promoted yet or its signature and attestation did not verify.
    baseline: Mapping[str, Any] | None = None

    @property
    def features(self) -> list[str]:
        """Columns usable as model features: all but the target and the excluded columns."""
        skip = {self.target, *self.feature_exclude}
        return [c for c in self.data.columns if c not in skip]


@runtime_checkable
class Stage(Protocol):
    """A pipeline stage: a name, the config section it reads, and `run`."""

    name: ClassVar[str]
    settings_model: ClassVar[type[StageSettings]]

    def __init__(self, settings: StageSettings) -> None: ...

    def run(self, context: Context) -> StageResult: ...


def available_stages() -> list[str]:
    """Names of all stages registered under the entry-point group (nothing is imported)."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)})


def load_stage(name: str, settings: Mapping[str, Any] | None = None, *, source: str = "config") -> Stage:
    """Import and instantiate the registered stage `name` with its validated settings."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        known = ", ".join(available_stages()) or "none"
        raise BadInputError(
            f"{source}: unknown stage '{name}'; registered stages: {known} "
            f"(third-party stages register under the '{ENTRY_POINT_GROUP}' entry-point group)"
        )
    try:
        cls = found[0].load()
    except Exception as exc:
        raise BadInputError(f"{source}: stage '{name}' ({found[0].value}) cannot be imported: {exc}; reinstall the package that provides it") from exc
    from secure_pipeline.config import validate_section  # local: config imports this module

    return cls(validate_section(cls.settings_model, settings or {}, f"{source}: {name}"))

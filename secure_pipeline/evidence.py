"""The evidence document: one versioned JSON per run, the `input` of the Rego policies."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from importlib.resources import files
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from secure_pipeline.errors import BadInputError

SCHEMA = "secure-pipeline/evidence/v1"
TOOLS = ("secure-pipeline", "mlflow", "scikit-learn", "great-expectations", "cleanlab", "model-signing", "skops", "regopy")


def tool_versions() -> dict[str, str]:
    """Installed versions of the tools whose behaviour the evidence depends on."""
    found = {}
    for name in TOOLS:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def canonical_bytes(document: dict[str, Any]) -> bytes:
    """Stable bytes of a JSON document (sorted keys, no spaces) for hashing."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def digest(document: dict[str, Any]) -> str:
    return f"sha256:{hashlib.sha256(canonical_bytes(document)).hexdigest()}"


@cache
def _validator(name: str) -> Draft202012Validator:
    schemas = files("secure_pipeline") / "schemas"
    loaded = {p.name: json.loads(p.read_text(encoding="utf-8")) for p in schemas.iterdir() if p.name.endswith(".json")}
    registry = Registry().with_resources((value["$id"], Resource.from_contents(value)) for value in loaded.values())
    return Draft202012Validator(loaded[name], registry=registry)


def validate(document: dict[str, Any], *, schema_file: str = "evidence-v1.schema.json", source: str = "evidence") -> None:
    """Raise `BadInputError` naming the first field that breaks the JSON Schema."""
    errors = sorted(_validator(schema_file).iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        field = "/".join(map(str, first.absolute_path)) or "(top level)"
        raise BadInputError(f"{source}: field '{field}': {first.message}; see the JSON Schema {schema_file}")


def load(path: Path) -> dict[str, Any]:
    """Read and validate an evidence document from disk."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise BadInputError(f"{path}: evidence file not found; pass the evidence.json of a run") from exc
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    if not isinstance(document, dict):
        raise BadInputError(f"{path}: evidence must be a JSON object")
    validate(document, source=str(path))
    return document

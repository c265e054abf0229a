"""Pack discovery and the policy digest.

A policy directory holds packs: each sub-directory with `.rego` files is a pack named after the
directory (`policies/gdpr` is the pack `gdpr`); `.rego` files directly in the directory form one
more pack named after the directory itself. A pack holds Rego v1 modules, its thresholds in
`data.json`, optionally a JSON Schema for them in `data.schema.json`, and fixture inputs in
`fixtures/` (not loaded). `*_test.rego` files are policy unit tests and are not loaded either.

The bundle digest (`policy_digest`) covers every rule and data file of the evaluated packs and the
waivers file, so a decision names exactly the policy that took it.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any, Sequence

from secure_pipeline.errors import BadInputError

DEFAULT_PACKS = ("baseline",)
SKIPPED_DIRS = {"fixtures", "__pycache__", "tests"}
CACHE_LIMIT = 16


def bundled_policy_dir() -> Path:
    """The Rego packs shipped with secure-pipeline."""
    return Path(str(files("secure_pipeline_policies")))


@dataclass(frozen=True)
class Pack:
    """One pack: its name, directory, rule modules, data files and optional data schema."""

    name: str
    root: Path
    rego: tuple[Path, ...]
    data: tuple[Path, ...]
    schema: Path | None


def _is_rule_file(path: Path, root: Path) -> bool:
    rel = path.relative_to(root).parts
    return path.suffix == ".rego" and not path.stem.endswith("_test") and not (set(rel[:-1]) & SKIPPED_DIRS) and path.is_file()


def available_packs(directory: Path) -> dict[str, Path]:
    """Pack name -> pack directory, for every pack in `directory`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise BadInputError(f"{directory}: policy directory not found; pass a directory of Rego packs to --policy")
    packs: dict[str, Path] = {}
    if any(_is_rule_file(p, directory) for p in directory.glob("*.rego")):
        packs[directory.name] = directory
    for sub in sorted(p for p in directory.iterdir() if p.is_dir() and p.name not in SKIPPED_DIRS and not p.name.startswith(".")):
        if any(_is_rule_file(p, sub) for p in sub.rglob("*.rego")):
            packs.setdefault(sub.name, sub)
    if not packs:
        raise BadInputError(f"{directory}: no .rego policy files found; add a policy pack or use the bundled one")
    return packs


def _pack_files(name: str, root: Path, top_level_only: bool) -> Pack:
    candidates = root.glob("*.rego") if top_level_only else root.rglob("*.rego")
    rego = tuple(sorted(p for p in candidates if _is_rule_file(p, root)))
    data_candidates = [root / "data.json"] if top_level_only else [p for p in root.rglob("data.json") if not (set(p.relative_to(root).parts[:-1]) & SKIPPED_DIRS)]
    data = tuple(sorted(p for p in data_candidates if p.is_file()))
    schema = root / "data.schema.json"
    return Pack(name, root, rego, data, schema if schema.is_file() else None)


_RESOLVED: dict[tuple[Any, ...], tuple[Path, list[Pack]]] = {}
_RESOLVED_LOCK = threading.Lock()


def _layout_signature(directory: Path) -> tuple[Any, ...]:
    """Modification times of the directory and its sub-directories: they change when a file is added or removed."""
    signature: list[tuple[str, int]] = []
    try:
        for root, dirs, _ in os.walk(directory):
            dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
            signature.append((root, os.stat(root).st_mtime_ns))
    except OSError:
        return ()
    return tuple(signature)


def resolve_packs(directory: Path | None = None, packs: Sequence[str] | None = None) -> tuple[Path, list[Pack]]:
    """The policy directory and the packs to evaluate in it; unknown names are bad input."""
    directory = Path(directory) if directory else bundled_policy_dir()
    key = (str(directory), tuple(packs) if packs is not None else None, _layout_signature(directory))
    with _RESOLVED_LOCK:
        if key[2] and key in _RESOLVED:
            return _RESOLVED[key]
    resolved = _resolve_packs(directory, packs)
    if key[2]:
        with _RESOLVED_LOCK:
            if len(_RESOLVED) >= CACHE_LIMIT:
                _RESOLVED.pop(next(iter(_RESOLVED)))
            _RESOLVED[key] = resolved
    return resolved


def _resolve_packs(directory: Path, packs: Sequence[str] | None) -> tuple[Path, list[Pack]]:
    found = available_packs(directory)
    if packs is None or len(packs) == 0:
        bundled = directory.resolve() == bundled_policy_dir().resolve()
        packs = DEFAULT_PACKS if bundled else tuple(found)
    chosen: list[Pack] = []
    for name in dict.fromkeys(packs):
        if name not in found:
            raise BadInputError(
                f"{directory}: unknown policy pack '{name}'; available packs: {', '.join(sorted(found))} (choose with --pack or policy.packs)"
            )
        chosen.append(_pack_files(name, found[name], top_level_only=found[name] == directory))
    return directory, chosen


def files_digest(directory: Path, packs: list[Pack]) -> str:
    """`sha256:<hex>` over the relative path and bytes of every rule, data and schema file of the packs."""
    digest = hashlib.sha256()
    for pack in packs:
        for path in sorted((*pack.rego, *pack.data, *([pack.schema] if pack.schema else []))):
            rel = path.relative_to(directory) if path.is_relative_to(directory) else path
            try:
                content = path.read_bytes()
            except OSError as exc:
                raise BadInputError(f"{path}: cannot read the policy file ({exc.strerror}); check its permissions") from exc
            digest.update(str(rel).encode() + b"\0" + content + b"\0")
    return f"sha256:{digest.hexdigest()}"


def with_waivers(digest: str, waivers_file: Path | None) -> str:
    """The bundle digest: the rules and data digest alone, or combined with the waivers file's bytes."""
    if waivers_file is None:
        return digest
    try:
        waived = Path(waivers_file).read_bytes()
    except OSError as exc:
        raise BadInputError(f"{waivers_file}: cannot read the waivers file ({exc.strerror}); pass an existing file to --waivers") from exc
    combined = hashlib.sha256(digest.encode() + b"\0waivers\0" + waived)
    return f"sha256:{combined.hexdigest()}"


def policy_digest(directory: Path | None = None, packs: Sequence[str] | None = None, waivers: Path | None = None) -> str:
    """`sha256:<hex>` over the rules, data and waivers of the evaluated packs: the policy's identity."""
    directory, chosen = resolve_packs(directory, packs)
    return with_waivers(files_digest(directory, chosen), waivers)

"""The scan report (files, issues, scanners) and the per-file context that collects issues."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from secure_pipeline.scanning import limits
from secure_pipeline.scanning.allowlist import is_known_dangerous

SCHEMA = "secure-pipeline/model-scan/v1"

SECOND_OPINION = "picklescan"


@dataclass(frozen=True)
class ScanIssue:
    """One reason why scanned content is unsafe.

    ``path`` is relative to the scanned root; members of archives are written
    ``archive.zip!member/inner.pkl``.  ``kind`` is a short machine-readable category
    (``unsafe-import``, ``unsafe-call``, ``unparseable``, ``untrusted-type``, ``too-large``,
    ``symlink``, ...), ``detail`` the offending item (e.g. ``os.system``) and ``message`` a
    one-line human explanation.
    """

    path: str
    kind: str
    detail: str
    message: str

    def to_json(self) -> dict[str, str]:
        """Return the issue as a JSON-compatible dict."""
        return {"path": self.path, "kind": self.kind, "detail": self.detail, "message": self.message}


@dataclass(frozen=True)
class ScanFile:
    """One file on disk that was scanned: its path, detected format and ``clean``/``unsafe`` status."""

    path: str
    format: str
    status: str

    def to_json(self) -> dict[str, str]:
        """Return the file record as a JSON-compatible dict."""
        return {"path": self.path, "format": self.format, "status": self.status}


@dataclass(frozen=True)
class ScanReport:
    """The result of scanning a file or directory."""

    root: str
    files_scanned: int
    issues: tuple[ScanIssue, ...]
    files: tuple[ScanFile, ...] = ()
    second_opinions: int = 0

    @property
    def clean(self) -> bool:
        """True when nothing unsafe was found."""
        return not self.issues

    def to_json(self) -> dict[str, Any]:
        """Return the report as the ``secure-pipeline/model-scan/v1`` JSON document."""
        return {
            "schema": SCHEMA,
            "root": self.root,
            "clean": self.clean,
            "files_scanned": self.files_scanned,
            "issues": [issue.to_json() for issue in self.issues],
            "files": [f.to_json() for f in self.files],
            "scanners": scanner_versions(),
            "pickle_streams_second_opinion": self.second_opinions,
        }


@dataclass
class ScanContext:
    """Mutable state while scanning one file on disk (and everything nested inside it)."""

    budget: int = field(default_factory=lambda: limits.MAX_INSPECT_BYTES)
    issues: list[ScanIssue] = field(default_factory=list)
    second_opinions: int = 0
    _seen: set[tuple[str, str, str]] = field(default_factory=set)

    def add(self, path: str, kind: str, detail: str, message: str) -> None:
        key = (path, kind, detail)
        if key not in self._seen:
            self._seen.add(key)
            self.issues.append(ScanIssue(path=path, kind=kind, detail=detail, message=message))

    def file(self, path: str, fmt: str) -> ScanFile:
        """The file record: unsafe when anything was found in it."""
        return ScanFile(path, fmt, "unsafe" if self.issues else "clean")

    def spend(self, nbytes: int) -> bool:
        """Account for ``nbytes`` more bytes to inspect; False once the budget is exhausted."""
        self.budget -= nbytes
        return self.budget >= 0


def _issue_message(path: str, kind: str, detail: str) -> str:
    """One line for a finding: "can run code" only for imports known to do so, else "not on the allowlist"."""
    if kind in ("unsafe-import", "untrusted-type") and not is_known_dangerous(detail):
        what = "imports" if kind == "unsafe-import" else "references type"
        return f"{path}: {what} {detail}, which is not on the allowlist"
    templates = {
        "unsafe-import": "{p}: imports {d}, which can run code when loaded",
        "unsafe-call": "{p}: {d} when loaded, which can run code",
        "unsafe-mutation": "{p}: modifies the imported object {d} when loaded",
        "unresolvable-import": "{p}: imports a global whose name is computed at load time ({d}); treated as unsafe",
        "persistent-load": "{p}: uses pickle persistent IDs ({d}), which hand control to the loader's code",
        "extension-registry": "{p}: imports through the copyreg extension registry ({d}); treated as unsafe",
        "unparseable": "{p}: cannot be parsed completely ({d}); treated as unsafe",
        "untrusted-type": "{p}: references type {d}, which can run code when loaded",
        "too-large": "{p}: too large or too deeply nested to inspect ({d}); treated as unsafe",
        "uninspectable": "{p}: cannot be inspected ({d}); treated as unsafe",
        "symlink": "{p}: is a symbolic link ({d}); not followed, treated as unsafe",
        "unsafe-path": "{p}: would be extracted outside the archive's folder ({d}); treated as unsafe",
        "special-file": "{p}: is not a regular file ({d}); treated as unsafe",
        "unreadable": "{p}: cannot be read ({d}); treated as unsafe",
    }
    template = templates.get(kind, "{p}: {d}")
    return template.format(p=path, d=detail)


def report_issue(ctx: ScanContext, path: str, kind: str, detail: str, message: str | None = None) -> None:
    """Record a finding; the one-line message is derived from its kind unless given."""
    ctx.add(path, kind, detail, message or _issue_message(path, kind, detail))


def short_error(exc: BaseException) -> str:
    """The first line of an exception's message (or its type), at most 160 characters."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


def scanner_versions() -> list[dict[str, str]]:
    """The scanners behind a report: our allowlist walker and the maintained denylist scanner."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    return [
        {"name": "secure-pipeline-allowlist", "version": installed("secure-pipeline"), "kind": "allowlist"},
        {"name": SECOND_OPINION, "version": installed(SECOND_OPINION), "kind": "denylist"},
    ]

"""Scan files and directory trees on disk (symbolic links and special files are reported, never followed)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterator

from secure_pipeline.errors import BadInputError
from secure_pipeline.scanning import limits
from secure_pipeline.scanning.content import scan_blob
from secure_pipeline.scanning.report import ScanContext, ScanReport, report_issue


def _iter_dir(root: Path) -> Iterator[tuple[Path, str]]:
    """Yield (path, relative posix path) for every entry below ``root``, without following links."""
    stack = [root]
    while stack:
        current = stack.pop()
        try:
            entries = sorted(os.scandir(current), key=lambda e: e.name)
        except OSError as exc:
            if current == root:
                raise BadInputError(f"cannot read directory {root}: {exc.strerror}; check its permissions") from exc
            yield current, "!unreadable-dir"
            continue
        dirs = []
        for entry in entries:
            if entry.name == ".git":
                continue
            entry_path = Path(entry.path)
            if entry.is_dir(follow_symlinks=False):
                dirs.append(entry_path)
            else:
                yield entry_path, ""
        stack.extend(reversed(dirs))


def _scan_file(file_path: Path, rel: str, ctx: ScanContext) -> str:
    try:
        st = file_path.lstat()
    except OSError as exc:
        report_issue(ctx, rel, "unreadable", exc.strerror or type(exc).__name__)
        return "unreadable"
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(file_path)
        except OSError:
            target = "?"
        report_issue(ctx, rel, "symlink", f"-> {target}")
        return "symlink"
    if not stat.S_ISREG(st.st_mode):
        report_issue(ctx, rel, "special-file", stat.filemode(st.st_mode))
        return "special"
    if st.st_size > limits.MAX_INSPECT_BYTES:
        report_issue(ctx, rel, "too-large", f"{st.st_size} bytes")
        return "too-large"
    try:
        data = file_path.read_bytes()
    except OSError as exc:
        report_issue(ctx, rel, "unreadable", exc.strerror or type(exc).__name__)
        return "unreadable"
    return scan_blob(data, rel, ctx, 0)


def scan_path(path: Path) -> ScanReport:
    """Scan a file or a directory tree for unsafe serialized content. Nothing is ever loaded.

    Raises :class:`~secure_pipeline.errors.BadInputError` if ``path`` does not exist.  Inside a
    directory, ``.git`` is skipped and symbolic links are reported (kind ``symlink``), not followed.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise BadInputError(f"model path {path} does not exist; pass the model file or directory to scan")
    scanned = _scan_tree(path) if path.is_dir() else [_scan_given_file(path)]
    return ScanReport(
        root=str(path),
        files_scanned=len(scanned),
        issues=tuple(issue for _, _, ctx in scanned for issue in ctx.issues),
        files=tuple(ctx.file(rel, fmt) for rel, fmt, ctx in scanned),
        second_opinions=sum(ctx.second_opinions for _, _, ctx in scanned),
    )


def _scan_tree(root: Path) -> list[tuple[str, str, ScanContext]]:
    """(relative path, format, findings) for every entry below ``root``."""
    scanned = []
    for entry_path, marker in _iter_dir(root):
        rel = entry_path.relative_to(root).as_posix()
        ctx = ScanContext()
        if marker == "!unreadable-dir":
            report_issue(ctx, rel, "unreadable", "directory cannot be listed")
            fmt = "directory"
        else:
            fmt = _scan_file(entry_path, rel, ctx)
        scanned.append((rel, fmt, ctx))
    return scanned


def _scan_given_file(path: Path) -> tuple[str, str, ScanContext]:
    """The one file the caller named (a link to a file is followed); its findings name the path as given."""
    resolved = path.resolve() if path.is_symlink() else path
    if not resolved.exists():
        raise BadInputError(f"model path {path} is a dangling symbolic link; pass the real file")
    try:
        with open(resolved, "rb"):
            pass
    except OSError as exc:
        raise BadInputError(f"cannot read {path}: {exc.strerror}; check the path and its permissions") from exc
    ctx = ScanContext()
    return str(path), _scan_file(resolved, str(path), ctx), ctx

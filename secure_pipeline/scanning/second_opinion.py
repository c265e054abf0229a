"""The second opinion: picklescan, a maintained denylist scanner, over the same pickle streams."""

from __future__ import annotations

import io

from secure_pipeline.scanning.allowlist import canonical_import
from secure_pipeline.scanning.pickle_vm import WalkResult
from secure_pipeline.scanning.report import SECOND_OPINION, ScanContext, report_issue


def _picklescan_dangerous(stream: bytes, path: str) -> list[str]:
    """Globals that picklescan classes as dangerous in one pickle stream (never loaded), in our spelling.

    Its protocol-2 spellings (``__builtin__.eval``, ``posix.system``) become the names the walk
    reports (``builtins.eval``, ``os.system``); its placeholder ``unknown`` (a name it could not
    resolve) becomes "an import it cannot resolve"; ``functools.partial`` is left to the walk,
    which accepts a partial only around an allowed function.
    """
    import logging

    from picklescan.scanner import SafetyLevel, scan_pickle_bytes

    logging.getLogger("picklescan").setLevel(logging.CRITICAL)
    result = scan_pickle_bytes(io.BytesIO(stream), path, multiple_pickles=False)
    found = set()
    for glob in result.globals:
        if glob.safety != SafetyLevel.Dangerous:
            continue
        if "unknown" in (glob.module, glob.name):
            found.add("an import it cannot resolve")
            continue
        module, name = canonical_import(glob.module, glob.name, proto=2)
        if (module, name) != ("functools", "partial"):
            found.add(f"{module}.{name}")
    return sorted(found)


def second_opinion(data: bytes, start: int, result: WalkResult, path: str, ctx: ScanContext) -> None:
    """Run picklescan over the same pickle stream(s) the walker read, with joblib's raw array
    bytes cut out (as joblib itself skips them); a file is unsafe if either scanner says so."""
    end = max(result.end, start)
    pieces, pos = [], start
    for begin, stop in sorted(result.skipped):
        if begin >= pos and stop <= end:
            pieces.append(data[pos:begin])
            pos = stop
    pieces.append(data[pos:end])
    streams = [b"".join(pieces), *(data[b:e] for b, e in result.nested)]
    for stream in streams:
        ctx.second_opinions += 1
        for finding in _picklescan_dangerous(stream, path):
            message = f"{path}: {SECOND_OPINION} reports {finding}; treated as unsafe"
            report_issue(ctx, path, "second-opinion", f"{SECOND_OPINION}: {finding}", message)

"""The second opinion: picklescan, a maintained denylist scanner, over the same pickle streams."""

from __future__ import annotations

import io

from secure_pipeline.scanning.pickle_vm import WalkResult
from secure_pipeline.scanning.report import SECOND_OPINION, ScanContext, report_issue


def _picklescan_dangerous(stream: bytes, path: str) -> list[str]:
    """Globals that picklescan classes as dangerous in one pickle stream (never loaded)."""
    import logging

    from picklescan.scanner import SafetyLevel, scan_pickle_bytes

    logging.getLogger("picklescan").setLevel(logging.CRITICAL)
    result = scan_pickle_bytes(io.BytesIO(stream), path, multiple_pickles=False)
    return sorted({f"{g.module}.{g.name}" for g in result.globals if g.safety == SafetyLevel.Dangerous})


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
        for dotted in _picklescan_dangerous(stream, path):
            report_issue(ctx, path, "second-opinion", f"{SECOND_OPINION}: {dotted}")



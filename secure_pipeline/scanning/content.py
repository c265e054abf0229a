"""Scan bytes by content: pickle, joblib, .npy, safetensors, text, or a container of them."""

from __future__ import annotations

import io
import json
import struct
import warnings
import zipfile

from secure_pipeline.scanning import containers, limits
from secure_pipeline.scanning.pickle_vm import Event, PickleWalker, WalkResult
from secure_pipeline.scanning.report import ScanContext, ScanReport, report_issue, short_error
from secure_pipeline.scanning.second_opinion import second_opinion


#: What the unpickler has already done when it rejects a later byte: imports and changes of imported objects.
_DONE_BEFORE_FAILING = frozenset({"unsafe-import", "unsafe-mutation"})


def _done_before_failing(event: Event) -> bool:
    """Whether the unpickler has acted on ``event`` even if it fails right after: a call, a change of an
    imported object, or the import of a package's ``__main__`` module, which runs that program as it is
    imported (``unittest.__main__`` runs test discovery, ``venv.__main__`` builds an environment)."""
    script = event.kind == "unsafe-import" and event.detail.rpartition(".")[0].endswith(".__main__")
    return event.called or script


def report_events(
    ctx: ScanContext, path: str, events: list[Event], *, importable_only: bool = False, kinds: frozenset[str] | None = None
) -> None:
    """Report walk events; the filters are for interpretations of bytes that may not be a pickle.

    ``importable_only`` drops events whose import could not succeed (module or name is not an
    identifier): the unpickler fails on them before anything runs (a CSV header read as a GLOBAL
    line, say). ``kinds`` keeps only those kinds of event.
    """
    for event in events:
        if kinds is not None and event.kind not in kinds:
            continue
        if importable_only and not event.plausible:
            continue
        report_issue(ctx, path, event.kind, event.detail)


def scan_pickle(data: bytes, start: int, path: str, ctx: ScanContext, *, strict: bool, joblib: bool) -> WalkResult:
    """Walk the pickle at ``data[start:]`` and report what it would import or call.

    ``strict``: the content is known to be a pickle, so a parse failure is "unparseable".
    Otherwise the content only *might* be a (protocol 0/1) pickle.  It is one if it parses to
    STOP, or if it *looks like* a pickle: every byte up to the end of the data parses as pickle
    opcodes, at least one of them imports a module attribute, and the data ends inside the
    pickle (a truncated stream, an argument whose length runs past the end).  Text files break
    off much earlier (an opcode the unpickler rejects, an empty stack), so they are not pickles;
    for those, only what the unpickler would do before it gives up is reported: the imports it
    calls, the ``__main__`` modules it imports, and the imported objects it changes (``SETITEM``
    on ``os.environ``, say). Other imports without a call are not reported there: a text file whose
    first lines read like a GLOBAL (``certifi`` / ``numpy`` in a requirements file) stays text.
    """
    result = PickleWalker(data, start, joblib=joblib).run()
    if strict or result.completed or (result.truncated and result.imports):
        report_events(ctx, path, result.events, importable_only=not strict)
        if not result.completed:
            report_issue(ctx, path, "unparseable", f"pickle: {result.error}")
        second_opinion(data, start, result, path, ctx)
    else:
        done = [event for event in result.events if _done_before_failing(event)]
        report_events(ctx, path, done, importable_only=True, kinds=_DONE_BEFORE_FAILING)
    if result.joblib_skipped:
        # A plain pickle.load of the same bytes would execute the array bytes as opcodes:
        # whatever that interpretation reaches before it breaks must be safe too.
        plain = PickleWalker(data, start, joblib=False).run()
        report_events(ctx, path, plain.events, importable_only=True, kinds=_DONE_BEFORE_FAILING)
    return result


def is_pickle_start(data: bytes) -> bool:
    """Whether ``data`` starts with a pickle PROTO opcode (protocol 2 to 5 always write one)."""
    return len(data) > 1 and data[0] == 0x80 and data[1] <= 5


def _scan_pickle_stream(data: bytes, path: str, ctx: ScanContext, depth: int, *, strict: bool) -> str | None:
    """Scan a pickle and whatever follows its STOP (more pickles, or other content).

    Returns the format name, or None when ``strict`` is false and the data is not a pickle.
    """
    pos = 0
    fmt = "pickle"
    while True:
        result = scan_pickle(data, pos, path, ctx, strict=strict, joblib=True)
        if result.joblib_skipped:
            fmt = "joblib"
        if not result.completed:
            if pos == 0 and not strict:
                return None
            if pos > 0 and not strict:
                # trailing bytes that are not a pickle: scan them as content of their own
                if depth + 1 <= limits.MAX_NESTING:
                    scan_blob(data[pos:], path, ctx, depth + 1)
            return fmt
        if result.end <= pos:
            return fmt
        pos = result.end
        if not data[pos:].strip(b"\x00 \t\r\n"):
            return fmt
        strict = is_pickle_start(data[pos : pos + 2])


def _is_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len < 2 or 8 + header_len > len(data) or data[8:9] != b"{":
        return False
    try:
        header = json.loads(data[8 : 8 + header_len])
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(header, dict)


def looks_like_text(data: bytes) -> bool:
    try:
        data[:1_000_000].decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut at the 1 MB boundary is still text
        return exc.start > 1_000_000 - 4
    return True


def scan_npy(data: bytes, path: str, ctx: ScanContext, depth: int) -> str:
    from numpy.lib import format as npformat

    stream = io.BytesIO(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            version = npformat.read_magic(stream)
            if version == (1, 0):
                header = npformat.read_array_header_1_0(stream)
            elif version == (2, 0):
                header = npformat.read_array_header_2_0(stream)
            else:
                header = npformat._read_array_header(stream, version)  # noqa: SLF001 - no public API for 3.0
        dtype = header[2]
    except Exception as exc:  # noqa: BLE001 - numpy raises many kinds; any failure fails closed
        report_issue(ctx, path, "unparseable", f"npy header: {short_error(exc)}")
        return "npy"
    if dtype.hasobject:
        scan_pickle(data, stream.tell(), path, ctx, strict=True, joblib=False)
        return "npy-object"
    return "npy"


def scan_blob(data: bytes, path: str, ctx: ScanContext, depth: int) -> str:
    """Scan one byte string by content; returns the detected format name."""
    if depth > limits.MAX_NESTING:
        report_issue(ctx, path, "too-large", f"nested more than {limits.MAX_NESTING} containers deep")
        return "nested"
    if not data:
        return "empty"
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return containers.scan_zip(data, path, ctx, depth, scan_blob)
    if data[:6] == b"\x93NUMPY":
        return scan_npy(data, path, ctx, depth)
    if data[:6] == containers.SEVEN_ZIP_MAGIC:
        return containers.scan_7z(data, path, ctx, depth, scan_blob)
    if containers.is_tar(data):
        return containers.scan_tar(data, path, ctx, depth, scan_blob)
    fmt = _scan_pickle_family(data, path, ctx, depth)
    if fmt in ("text", "data") and zipfile.is_zipfile(io.BytesIO(data)):
        # a zip with something prepended (zipfile finds its end record)
        return containers.scan_zip(data, path, ctx, depth, scan_blob)
    if fmt in ("text", "data") and _opens_as_tar(data):
        # an old (v7) tar has no magic; tarfile still opens it when the header checksum is right
        return containers.scan_tar(data, path, ctx, depth, scan_blob)
    return fmt


def _opens_as_tar(data: bytes) -> bool:
    import tarfile

    if len(data) < 512:
        return False
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as archive:
            return archive.next() is not None
    except (tarfile.TarError, OSError, ValueError, EOFError, UnicodeDecodeError):
        return False


def _scan_pickle_family(data: bytes, path: str, ctx: ScanContext, depth: int) -> str:
    if _is_safetensors(data):
        # cannot carry code; but refuse a pickle/safetensors polyglot
        scan_pickle(data, 0, path, ctx, strict=False, joblib=True)
        return "safetensors"
    if is_pickle_start(data):
        return _scan_pickle_stream(data, path, ctx, depth, strict=True) or "pickle"
    kind = containers.compression_kind(data)
    if kind is not None:
        fmt = _scan_compressed(kind, data, path, ctx, depth)
        if fmt is not None:
            return fmt
    # maybe a protocol 0/1 pickle (these start with ordinary characters)
    issues_before = len(ctx.issues)
    fmt = _scan_pickle_stream(data, path, ctx, depth, strict=False)
    if fmt is not None:
        return fmt
    if len(ctx.issues) > issues_before:
        return "pickle"  # not a complete pickle, but the unpickler would run something before failing
    if looks_like_text(data):
        return "json" if data.lstrip()[:1] in (b"{", b"[") and _is_json(data) else "text"
    return "data"


def _scan_compressed(kind: str, data: bytes, path: str, ctx: ScanContext, depth: int) -> str | None:
    """Decompress and scan what comes out; None when the data only starts like a compressed stream
    (a text file that happens to start with "x^" is not zlib)."""
    inner, error = containers.decompress(kind, data, max(ctx.budget, 0))
    if error and not inner and kind in ("zlib", "bz2", "joblib-zfile", "lzma") and looks_like_text(data):
        return None
    if error == "too-large":
        report_issue(ctx, path, "too-large", f"{kind} stream decompresses beyond the inspection budget")
    elif error == "lz4 is not installed":
        report_issue(ctx, path, "uninspectable", "lz4-compressed and the lz4 package is not installed")
    elif error:
        report_issue(ctx, path, "unparseable", f"{kind}: {error}")
    if not inner:
        return kind
    ctx.spend(len(inner))
    if depth + 1 > limits.MAX_NESTING:
        report_issue(ctx, path, "too-large", f"nested more than {limits.MAX_NESTING} containers deep")
        return kind
    return f"{kind}+{scan_blob(inner, path, ctx, depth + 1)}"


def _is_json(data: bytes) -> bool:
    if len(data) > 50 * 1024**2:
        return True
    try:
        json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return False
    return True


def scan_bytes(data: bytes, name: str = "<bytes>") -> ScanReport:
    """Scan an in-memory byte string as if it were a file called ``name``."""
    ctx = ScanContext()
    fmt = scan_blob(data, name, ctx, 0)
    return ScanReport(root=name, files_scanned=1, issues=tuple(ctx.issues), files=(ctx.file(name, fmt),), second_opinions=ctx.second_opinions)



"""Containers scanned member by member: zip (and .skops), 7z, tar (and legacy PyTorch), compressed streams."""

from __future__ import annotations

import bz2
import io
import lzma
import posixpath
import tarfile
import zipfile
import zlib
from pathlib import PurePosixPath
from typing import Any, Callable

from secure_pipeline.scanning import limits
from secure_pipeline.scanning.allowlist import is_allowed_global
from secure_pipeline.scanning.report import ScanContext, report_issue, short_error

#: Scans one member's bytes by content: ``scan_member(data, path, ctx, depth) -> format``.
MemberScanner = Callable[[bytes, str, ScanContext, int], str]

_ZFILE_HEADER = 2 + len(hex(2**64))  # joblib < 0.10: b"ZF" + hex length padded to 19 chars


def compression_kind(data: bytes) -> str | None:
    if data[:2] == b"\x1f\x8b":
        return "gzip"
    if data[:6] == b"\xfd7zXZ\x00":
        return "xz"
    if data[:4] == b"\x04\x22\x4d\x18":
        return "lz4"
    if data[:3] == b"BZh" and data[3:4].isdigit() and data[3:4] != b"0":
        return "bz2"
    if data[:3] == b"\x5d\x00\x00":
        return "lzma"
    if data[:2] == b"ZF" and len(data) > _ZFILE_HEADER:
        try:
            int(data[2:_ZFILE_HEADER].strip() or b"x", 16)
            return "joblib-zfile"
        except ValueError:
            return None
    if len(data) >= 2 and data[0] == 0x78 and (data[0] * 256 + data[1]) % 31 == 0:
        return "zlib"
    return None


#: Streams that may hold several members back to back (``gzip -c a b``, ``xz``, ``bz2`` concatenation):
#: a fresh decompressor per member, and the magic that starts the next one (legacy lzma has none).
_MULTI_MEMBER: dict[str, tuple[Callable[[], Any], bytes | None]] = {
    "gzip": (lambda: zlib.decompressobj(16 + zlib.MAX_WBITS), b"\x1f\x8b"),
    "bz2": (bz2.BZ2Decompressor, b"BZh"),
    "xz": (lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ), b"\xfd7zXZ\x00"),
    "lzma": (lambda: lzma.LZMADecompressor(format=lzma.FORMAT_ALONE), None),
}


def decompress(kind: str, data: bytes, limit: int) -> tuple[bytes, str]:
    """Decompress ``data``; returns (output, error). Output may be partial when error is set."""
    out = bytearray()
    try:
        if kind in ("zlib", "joblib-zfile"):
            return _decompress_one(zlib.decompressobj(), _zlib_payload(kind, data), limit, "zlib", out)
        if kind in _MULTI_MEMBER:
            return _decompress_members(kind, data, limit, out)
        if kind == "lz4":
            try:
                import lz4.frame  # type: ignore[import-not-found]
            except ImportError:
                return b"", "lz4 is not installed"
            return _decompress_one(lz4.frame.LZ4FrameDecompressor(), data, limit, kind, out)
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError, RuntimeError) as exc:
        return bytes(out), short_error(exc)
    return b"", f"unknown compression {kind}"


def _zlib_payload(kind: str, data: bytes) -> bytes:
    """The zlib stream: the data itself, or what follows joblib < 0.10's ``ZF`` length header."""
    if kind == "zlib":
        return data
    payload = data[_ZFILE_HEADER:]
    return payload[1:] if payload[:1] == b" " else payload


def _decompress_one(decompressor: Any, payload: bytes, limit: int, kind: str, out: bytearray) -> tuple[bytes, str]:
    """One stream into ``out``, at most ``limit`` bytes; the stream must end where its format says."""
    out.extend(decompressor.decompress(payload, limit + 1 - len(out)))
    if len(out) > limit:
        return bytes(out), "too-large"
    if not decompressor.eof:
        return bytes(out), f"truncated {kind} stream"
    return bytes(out), ""


def _decompress_members(kind: str, data: bytes, limit: int, out: bytearray) -> tuple[bytes, str]:
    """Every member of a multi-member stream; NUL padding may follow the last, anything else is an error."""
    make, magic = _MULTI_MEMBER[kind]
    rest = data
    while rest:
        decompressor = make()
        _, error = _decompress_one(decompressor, rest, limit, kind, out)
        if error:
            return bytes(out), error
        rest = decompressor.unused_data
        if rest and (magic is None or not rest.startswith(magic)):
            if rest.strip(b"\x00"):
                return bytes(out), f"trailing data after {kind} stream"
            break
    return bytes(out), ""


def _over_budget(total: int, path: str, ctx: ScanContext) -> bool:
    """An archive whose members add up to more than the inspection budget is not opened."""
    if total > ctx.budget:
        report_issue(ctx, path, "too-large", f"{total} bytes uncompressed")
        return True
    return False


def _is_bomb(size: int, compressed: int, member_path: str, ctx: ScanContext) -> bool:
    """A big member whose declared size is far beyond the bytes that hold it is a decompression bomb."""
    if size > limits.RATIO_MIN_SIZE and size > limits.MAX_COMPRESSION_RATIO * max(compressed, 1):
        report_issue(ctx, member_path, "too-large", "compression ratio suggests a decompression bomb")
        return True
    return False


def _scan_content(content: bytes, member_path: str, ctx: ScanContext, depth: int, scan_member: MemberScanner) -> bool:
    """Scan one member's bytes; False once the inspection budget is exhausted (stop the archive)."""
    if not ctx.spend(len(content)):
        report_issue(ctx, member_path, "too-large", "inspection budget exhausted")
        return False
    scan_member(content, member_path, ctx, depth + 1)
    return True


def scan_zip(data: bytes, path: str, ctx: ScanContext, depth: int, scan_member: MemberScanner) -> str:
    """Scan every member of a zip archive by content; a zip whose directory cannot be read is unparseable."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        report_issue(ctx, path, "unparseable", f"zip: {short_error(exc)}")
        return "zip"
    fmt = "zip"
    with archive:
        infos = archive.infolist()
        names = {info.filename for info in infos}
        if "schema.json" in names:
            fmt = "skops"
        elif any(n.endswith(".npy") for n in names) and all(n.endswith(".npy") or n.endswith("/") for n in names):
            fmt = "npz"
        elif any(n.endswith("data.pkl") for n in names):
            fmt = "pytorch"
        if _over_budget(sum(info.file_size for info in infos), path, ctx):
            return fmt
        for info in infos:
            member_path = f"{path}!{info.filename}"
            if info.is_dir() and info.file_size == 0:
                continue  # a directory entry that holds bytes is read like a file by zipfile: scanned
            if info.flag_bits & 0x1:
                report_issue(ctx, member_path, "uninspectable", "encrypted zip member")
                continue
            if _is_bomb(info.file_size, info.compress_size, member_path, ctx):
                continue  # declared sizes are checked again while reading: a member may not grow past them
            try:
                with archive.open(info) as member:
                    content = member.read(info.file_size + 1)
                    if len(content) > info.file_size or member.read(1):
                        raise zipfile.BadZipFile("member longer than declared")
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error, lzma.LZMAError, RuntimeError) as exc:
                report_issue(ctx, member_path, "unparseable", f"zip member: {short_error(exc)}")
                continue
            if not _scan_content(content, member_path, ctx, depth, scan_member):
                return fmt
        if fmt == "skops":
            scan_skops_types(data, path, ctx)
    return fmt


def scan_skops_types(data: bytes, path: str, ctx: ScanContext) -> None:
    try:
        from skops.io import get_untrusted_types
    except ImportError:  # pragma: no cover - skops is a dependency
        report_issue(ctx, path, "uninspectable", "skops is not installed")
        return
    try:
        untrusted = get_untrusted_types(data=data)
    except Exception as exc:  # noqa: BLE001 - malformed schema of any kind fails closed
        report_issue(ctx, path, "unparseable", f"skops schema: {short_error(exc)}")
        return
    for type_name in untrusted:
        module, _, name = str(type_name).rpartition(".")
        if not is_allowed_global(module, name):
            report_issue(ctx, path, "untrusted-type", str(type_name))




SEVEN_ZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"


def scan_7z(data: bytes, path: str, ctx: ScanContext, depth: int, scan_member: MemberScanner) -> str:
    """Scan every member of a 7z archive by content (py7zr, in memory; CRCs are checked).

    Encrypted archives and compression methods py7zr cannot decode are ``uninspectable``;
    links are reported, not followed.
    """
    import py7zr
    from py7zr.exceptions import UnsupportedCompressionMethodError
    from py7zr.io import BytesIOFactory

    try:
        with py7zr.SevenZipFile(io.BytesIO(data), mode="r") as archive:
            if archive.needs_password():
                report_issue(ctx, path, "uninspectable", "encrypted 7z archive")
                return "7z"
            infos = [info for info in archive.list() if not info.is_directory]
            if _over_budget(sum(info.uncompressed or 0 for info in infos), path, ctx):
                return "7z"
            for info in infos:
                if info.is_symlink:
                    report_issue(ctx, f"{path}!{info.filename}", "symlink", "7z member that is a link")
                elif _is_bomb(info.uncompressed or 0, info.compressed or len(data), f"{path}!{info.filename}", ctx):
                    return "7z"
            factory = BytesIOFactory(max((info.uncompressed or 0 for info in infos), default=0) + 1)
            archive.extractall(factory=factory)
    except py7zr.PasswordRequired:
        report_issue(ctx, path, "uninspectable", "encrypted 7z archive")
        return "7z"
    except UnsupportedCompressionMethodError as exc:
        report_issue(ctx, path, "uninspectable", f"7z: {short_error(exc)}")
        return "7z"
    except Exception as exc:  # noqa: BLE001 - py7zr raises many kinds on a damaged archive; any of them fails closed
        report_issue(ctx, path, "unparseable", f"7z: {short_error(exc)}")
        return "7z"
    for info in infos:
        if info.is_symlink:
            continue
        member_path = f"{path}!{info.filename}"
        try:
            member = factory.get(info.filename)
        except KeyError:
            report_issue(ctx, member_path, "unparseable", "7z member was not extracted")
            continue
        member.seek(0)
        content = member.read()
        if len(content) != (info.uncompressed or 0):
            report_issue(ctx, member_path, "unparseable", "7z member size differs from the declared size")
            continue
        if not _scan_content(content, member_path, ctx, depth, scan_member):
            break
    return "7z"


def is_tar(data: bytes) -> bool:
    """A POSIX/GNU tar archive (the ``ustar`` magic of the first header)."""
    return data[257:262] == b"ustar"


#: members of the legacy (pre-zip) PyTorch checkpoint, written with tarfile
_TORCH_TAR_MEMBERS = frozenset({"pickle", "storages", "tensors"})


def _leaves_archive(member: tarfile.TarInfo) -> str:
    """Why extracting ``member`` would write or link outside the destination folder ('' if it would not)."""
    if member.name.startswith("/") or ".." in PurePosixPath(member.name).parts:
        return f"member path {member.name}"
    if member.issym() or member.islnk():
        base = posixpath.dirname(member.name) if member.issym() else ""
        target = posixpath.normpath(posixpath.join(base, member.linkname))
        if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
            return f"link -> {member.linkname}"
    return ""


def scan_tar(data: bytes, path: str, ctx: ScanContext, depth: int, scan_member: MemberScanner) -> str:
    """Scan every member of a tar archive by content.

    Members or links that would land outside the extraction folder (absolute paths, ``..``),
    devices and FIFOs are reported; links inside the archive are not followed (their targets are
    members, scanned themselves); sparse members are checked like bombs.
    """
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:")
        members = archive.getmembers()
    except (tarfile.TarError, OSError, ValueError, EOFError, UnicodeDecodeError) as exc:
        report_issue(ctx, path, "unparseable", f"tar: {short_error(exc)}")
        return "tar"
    fmt = "pytorch-tar" if _TORCH_TAR_MEMBERS <= {m.name for m in members} else "tar"
    with archive:
        files = [m for m in members if m.isfile()]
        if _over_budget(sum(m.size for m in files), path, ctx):
            return fmt
        for member in members:
            member_path = f"{path}!{member.name}"
            if member.isdir():
                continue
            escape = _leaves_archive(member)
            if escape:
                report_issue(ctx, member_path, "unsafe-path", escape)
                continue
            if member.issym() or member.islnk():
                continue  # a link to another member, which is scanned itself
            if not member.isfile():
                report_issue(ctx, member_path, "special-file", "tar member that is not a regular file")
                continue
            if _is_bomb(member.size, len(data), member_path, ctx):
                continue
            try:
                handle = archive.extractfile(member)
                content = handle.read() if handle is not None else b""
            except (tarfile.TarError, OSError, ValueError, EOFError) as exc:
                report_issue(ctx, member_path, "unparseable", f"tar member: {short_error(exc)}")
                continue
            if len(content) != member.size:
                report_issue(ctx, member_path, "unparseable", "tar member shorter than declared")
                continue
            if not _scan_content(content, member_path, ctx, depth, scan_member):
                return fmt
    return fmt

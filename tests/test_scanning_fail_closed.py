"""The scanner fails closed on streams a loader would read differently from the scanner.

Every fixture is assembled as bytes and only scanned; nothing here is ever unpickled.
"""

from __future__ import annotations

import json
import pickle
import struct

import pytest

from secure_pipeline.scanning import ScanReport, scan_bytes

# --------------------------------------------------------------------------------------------
# Pickle FRAME boundaries (python/cpython#154848; fickling's frame_boundary_divergence)
# --------------------------------------------------------------------------------------------

_HIDDEN_CALL = pickle.GLOBAL + b"os\nsystem\n" + pickle.UNICODE + b"echo pwned\n" + pickle.TUPLE1 + pickle.REDUCE


def _frame(length: int) -> bytes:
    return pickle.FRAME + struct.pack("<Q", length)


def _framed(body: bytes, declared_length: int) -> bytes:
    return pickle.PROTO + b"\x05" + _frame(declared_length) + body + pickle.STOP


# fickling's divergence file: BINBYTES declares 0x107 bytes inside a frame that holds 2, so a
# linear reader sees one long bytes object while pickle.load(file) runs the buried os.system call
_DIVERGENCE = (
    pickle.PROTO
    + b"\x05"
    + pickle.NONE
    + pickle.UNICODE
    + b"a" * (8192 * 16 - 17)
    + b"\n"
    + pickle.POP
    + pickle.MARK
    + _frame(2)
    + pickle.BINBYTES
    + b"\x07\x01\x00\x00"
    + b"\x00\x00"
    + (_HIDDEN_CALL + pickle.MARK).ljust(256 + 5, pickle.NONE)
    + pickle.POP_MARK
    + pickle.STOP
)

MALFORMED_FRAMES = {
    "divergence hides os.system": _DIVERGENCE,
    "BINBYTES crosses the frame end": _framed(pickle.BINBYTES + struct.pack("<I", 20) + b"A" * 20 + pickle.POP + pickle.NONE, 5),
    "SHORT_BINUNICODE crosses the frame end": _framed(b"\x8c\x14" + b"A" * 20 + pickle.POP + pickle.NONE, 3),
    "GLOBAL module line crosses the frame end": _framed(pickle.GLOBAL + b"macos\nsystem\n", 4),
    "GLOBAL name line crosses the frame end": _framed(pickle.GLOBAL + b"os\nsystem\n", 7),
    "UNICODE crosses the frame end": _framed(pickle.UNICODE + b"hello world\n", 5),
    "BININT crosses the frame end": _framed(pickle.BININT + struct.pack("<i", 7), 2),
    "FRAME opened inside a frame": pickle.PROTO + b"\x05" + _frame(30) + pickle.NONE + _frame(2) + pickle.NONE + pickle.STOP,
    "frame runs past STOP": _framed(pickle.NONE, 40) + b"\x00" * 39,
}


def _framing_issue(report: ScanReport) -> bool:
    return any(i.kind == "unparseable" and "malformed pickle framing" in i.detail for i in report.issues)


@pytest.mark.parametrize("name", sorted(MALFORMED_FRAMES))
def test_malformed_frames_are_unsafe(name: str) -> None:
    report = scan_bytes(MALFORMED_FRAMES[name], "model.pkl")
    assert not report.clean
    assert _framing_issue(report), report.issues


def test_the_divergence_file_looks_harmless_to_a_linear_reader() -> None:
    # what makes the file dangerous: read linearly (as pickletools and the old walk did) it imports nothing
    import pickletools

    names = [op.name for op, _, _ in pickletools.genops(_DIVERGENCE)]
    assert "GLOBAL" not in names and "REDUCE" not in names
    assert _HIDDEN_CALL in _DIVERGENCE


@pytest.mark.parametrize("protocol", [2, 4, 5])
@pytest.mark.parametrize(
    "obj",
    [[1, 2, 3, 4], b"x" * 100_000, [1, b"y" * 100_000, 2], list(range(200_000)), {"a": [1, 2, {"b": (3, 4)}], "c": [5, 6]}],
    ids=["small", "large-unframed-bytes", "framed-unframed-framed", "several-full-frames", "nested"],
)
def test_well_formed_frames_are_clean(obj: object, protocol: int) -> None:
    report = scan_bytes(pickle.dumps(obj, protocol=protocol), "data.pkl")
    assert report.clean, report.issues


# --------------------------------------------------------------------------------------------
# Truncated protocol 0/1 streams vs. text files
# --------------------------------------------------------------------------------------------

TRUNCATED_PICKLES = {
    "exec then MARK": b"cbuiltins\nexec\n(",
    "BINUNICODE length past the end": b"cbuiltins\nexec\n(X\xff\x00\x00\x00print(1)",
    "STRING without its end": b"cbuiltins\nexec\n(S'print(1)",
    "SHORT_BINSTRING length past the end": b"cos\nsystem\n(U\x40echo",
    "INST then the end": b"(S'echo pwned'\nios\nsystem\n",
    "allowed import, truncated": b"cbuiltins\nset\n(]",
    "protocol 1 dict then truncated": b"}q\x00(X\x01\x00\x00\x00acbuiltins\neval\nq\x01",
}


@pytest.mark.parametrize("name", sorted(TRUNCATED_PICKLES))
def test_truncated_protocol0_pickle_is_unsafe(name: str) -> None:
    report = scan_bytes(TRUNCATED_PICKLES[name], "model.txt")
    assert not report.clean
    assert report.files[0].format == "pickle"
    assert any(i.kind == "unparseable" for i in report.issues), report.issues


# Streams that change an imported object and then break: the unpickler has already made the
# change when it reaches the byte it rejects, so a stream that is "not a complete pickle" is not text.
MUTATE_THEN_BREAK = {
    "os.environ SETITEM": (b"cos\nenviron\nS'LD_PRELOAD'\nS'/tmp/evil.so'\nsZ", "os.environ (SETITEM)"),
    "sys.path APPEND": (b"csys\npath\nS'/tmp/evil'\naZ", "sys.path (APPEND)"),
    "class attribute BUILD": (b"csklearn.base\nBaseEstimator\n(N}S'__repr__'\ncos\nsystem\nstbZ", "sklearn.base.BaseEstimator (BUILD)"),
}


# Importing is already running code: find_class imports the module before it looks up the name,
# and some modules act on import (`unittest.__main__` runs test discovery in the working folder,
# `venv.__main__` creates an environment and exits). The bad byte after it comes too late.
IMPORT_THEN_BREAK = {
    "unittest.__main__": (b"cunittest.__main__\nmain\nZ", "unittest.__main__.main"),
    "venv.__main__": (b"cvenv.__main__\nmain\n\xff", "venv.__main__.main"),
}


@pytest.mark.parametrize("name", sorted(IMPORT_THEN_BREAK))
def test_an_import_before_a_bad_opcode_is_unsafe(name: str) -> None:
    data, detail = IMPORT_THEN_BREAK[name]
    report = scan_bytes(data, "model.txt")
    assert ("unsafe-import", detail) in {(i.kind, i.detail) for i in report.issues}, report.issues


@pytest.mark.parametrize("name", sorted(MUTATE_THEN_BREAK))
def test_a_mutation_before_a_bad_opcode_is_unsafe(name: str) -> None:
    data, detail = MUTATE_THEN_BREAK[name]
    report = scan_bytes(data, "model.txt")
    assert ("unsafe-mutation", detail) in {(i.kind, i.detail) for i in report.issues}, report.issues


_MLMODEL = (
    "artifact_path: model\nflavors:\n  python_function:\n    env:\n      conda: conda.yaml\n"
    "    loader_module: mlflow.sklearn\n    model_path: model.skops\n    predict_fn: predict\n"
    "    python_version: 3.11.7\n  sklearn:\n    code: null\n    pickled_model: model.skops\n"
    "    serialization_format: skops\n    sklearn_version: 1.9.1\nmlflow_version: 3.17.2\n"
    "model_uuid: 0f1e2d3c4b5a\nutc_time_created: '2026-11-28 10:00:00.000000'\n"
)
TEXT_FILES = {
    "iris.csv": b"sepal_length,sepal_width,petal_length,petal_width,species\n5.1,3.5,1.4,0.2,setosa\n",
    "starts-with-c.csv": b"const_p1,const_p2,const_f1\n.7376958,.2623042,.9997776\n.9818866,.0181134,.999989\n",
    "quoted.csv": b'"c","os"\n"system",1\n',
    "tab.tsv": b"c\tos\nsystem\t(\n",
    "config.json": json.dumps({"c": "os", "system": ["echo", "pwned"]}).encode(),
    "input_example.json": b'{"columns": ["a", "b"], "data": [[1, 2]]}',
    "conda.yaml": b"channels:\n- conda-forge\ndependencies:\n- python=3.11.7\n- pip:\n  - mlflow==3.17.2\nname: mlflow-env\n",
    "python_env.yaml": b"python: 3.11.7\nbuild_dependencies:\n- pip==24.0\ndependencies:\n- -r requirements.txt\n",
    "MLmodel": _MLMODEL.encode(),
    "README.md": "# Credit model\n\ncos\nsystem\n(S'not a pickle'\n\u00e9\n".encode(),
    "requirements.txt": b"certifi\nnumpy\nscikit-learn==1.9.1\n",
    "one-letter.txt": b"(",
    "list.txt": b"(lp0\nI1\naI2\n",
}


@pytest.mark.parametrize("name", sorted(TEXT_FILES))
def test_text_files_stay_clean(name: str) -> None:
    report = scan_bytes(TEXT_FILES[name], name)
    assert report.clean, report.issues


# --------------------------------------------------------------------------------------------
# Messages
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "dotted"),
    [(pickle.dumps(len, protocol=4), "builtins.len"), (b"\x80\x04\x8c\n__future__\x8c\x0bannotations\x93.", "__future__.annotations")],
)
def test_an_import_off_the_allowlist_is_named_so(data: bytes, dotted: str) -> None:
    report = scan_bytes(data, "m.pkl")
    assert [i.message for i in report.issues if i.kind == "unsafe-import"] == [f"m.pkl: imports {dotted}, which is not on the allowlist"]
    assert not any("can run code" in i.message for i in report.issues)


def test_second_opinion_is_worded_as_picklescans_finding_in_our_spelling() -> None:
    import os

    class _Eval:
        def __reduce__(self):  # dumped only
            return (eval, ("1",))

    for data, dotted in [(pickle.dumps(_Eval(), protocol=2), "builtins.eval"), (pickle.dumps(os.system, protocol=2), "os.system")]:
        report = scan_bytes(data, "m.pkl")
        messages = [i.message for i in report.issues]
        assert f"m.pkl: imports {dotted}, which can run code when loaded" in messages
        assert f"m.pkl: picklescan reports {dotted}; treated as unsafe" in messages
        assert not any("__builtin__" in m or "posix" in m for m in messages), messages


def test_second_opinion_never_shows_picklescans_placeholder() -> None:
    # the module name is the result of a call: picklescan says "unknown", the walk "cannot be resolved"
    data = b"\x80\x04\x8c\x08builtins\x8c\x03str\x93C\x02os\x85R\x8c\x06system\x93N\x85R."
    report = scan_bytes(data, "m.pkl")
    assert not report.clean
    assert not any("unknown" in i.message for i in report.issues), report.issues


def test_scan_model_names_the_path_it_was_given(capsys: pytest.CaptureFixture[str]) -> None:
    from conftest import run_main

    code, _, err = run_main(capsys, "scan-model", "/dev/null")
    assert code == 1
    assert "/dev/null: is not a regular file" in err


def test_a_zip_end_record_whose_directory_cannot_be_read_is_unsafe() -> None:
    # zipfile.is_zipfile finds the end record after the prefix, but the central directory is damaged:
    # the member (a stored pickle that calls os.system) was never read, so the file is not clean
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps(_Evil(), protocol=2))
    raw = bytearray(buf.getvalue())
    entry = raw.rfind(b"PK\x01\x02")
    raw[entry + 1] = ord("X")
    data = b"\xffprefix\n" + bytes(raw)
    assert zipfile.is_zipfile(io.BytesIO(data))
    report = scan_bytes(data, "m.bin")
    assert ("m.bin", "unparseable") in {(i.path, i.kind) for i in report.issues}, report.issues


def test_a_zip_directory_entry_with_content_is_scanned() -> None:
    # a name ending in "/" marks a directory, but the entry still holds bytes that zipfile.read returns
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("archive/", b"")
        archive.writestr("archive/data.pkl/", pickle.dumps(_Evil(), protocol=2))
    report = scan_bytes(buf.getvalue(), "m.zip")
    assert ("m.zip!archive/data.pkl/", "os.system") in {(i.path, i.detail) for i in report.issues}, report.issues
    assert not any(i.path == "m.zip!archive/" for i in report.issues)


# --------------------------------------------------------------------------------------------
# 7z archives and tar (the legacy PyTorch checkpoint layout)
# --------------------------------------------------------------------------------------------


class _Evil:
    def __reduce__(self):  # dumped only, never loaded
        import os

        return (os.system, ("echo pwned",))


def _7z_bytes(members: dict[str, bytes], **kwargs: object) -> bytes:
    import io

    import py7zr

    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w", **kwargs) as archive:
        for name, data in members.items():
            archive.writestr(data, name)
    return buf.getvalue()


def _tar_bytes(members: dict[str, bytes], links: dict[str, str] | None = None, fmt: int = 1) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buf.getvalue()


def _legacy_torch_tar(main_pickle: bytes) -> bytes:
    """The pre-zip torch.save layout: a tar of sys_info, pickle, tensors and storages."""
    return _tar_bytes(
        {
            "sys_info": pickle.dumps({"protocol_version": 1001, "little_endian": True, "type_sizes": {"int": 4}}, protocol=2),
            "pickle": main_pickle,
            "tensors": pickle.dumps(0, protocol=2),
            "storages": pickle.dumps(0, protocol=2),
        }
    )


def _assert_unsafe_os_system(report: ScanReport, member: str) -> None:
    assert not report.clean
    assert any(i.detail == "os.system" and i.path == member for i in report.issues), report.issues


def test_7z_members_are_scanned() -> None:
    evil = _7z_bytes({"model/weights.pkl": pickle.dumps(_Evil(), protocol=4), "README.md": b"# model\n"})
    report = scan_bytes(evil, "model.7z")
    _assert_unsafe_os_system(report, "model.7z!model/weights.pkl")
    assert report.files[0].format == "7z"
    clean = scan_bytes(_7z_bytes({"weights.pkl": pickle.dumps({"w": [1.0, 2.0]}, protocol=4)}), "model.7z")
    assert clean.clean, clean.issues


def test_encrypted_7z_is_uninspectable() -> None:
    data = _7z_bytes({"weights.pkl": pickle.dumps({"w": 1}, protocol=4)}, password="secret")
    report = scan_bytes(data, "model.7z")
    assert [i.kind for i in report.issues] == ["uninspectable"], report.issues


def test_damaged_7z_is_unsafe() -> None:
    data = bytearray(_7z_bytes({"weights.pkl": pickle.dumps(list(range(200)), protocol=4)}))
    data[40] ^= 0xFF  # inside the packed stream
    report = scan_bytes(bytes(data), "model.7z")
    assert not report.clean
    assert {i.kind for i in report.issues} <= {"unparseable", "uninspectable"}, report.issues
    assert not scan_bytes(bytes(data[:-20]), "model.7z").clean  # truncated


def test_7z_bomb_is_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    from secure_pipeline.scanning import limits

    monkeypatch.setattr(limits, "RATIO_MIN_SIZE", 1000)
    monkeypatch.setattr(limits, "MAX_COMPRESSION_RATIO", 100)
    report = scan_bytes(_7z_bytes({"zeros.bin": b"\x00" * 1_000_000}), "bomb.7z")
    assert "too-large" in {i.kind for i in report.issues}


def test_legacy_pytorch_tar_layout_is_scanned() -> None:
    clean = scan_bytes(_legacy_torch_tar(pickle.dumps({"layer.weight": [0.5, 0.25]}, protocol=2)), "model.pt")
    assert clean.clean, clean.issues
    assert clean.files[0].format == "pytorch-tar"
    report = scan_bytes(_legacy_torch_tar(pickle.dumps(_Evil(), protocol=2)), "model.pt")
    _assert_unsafe_os_system(report, "model.pt!pickle")


def test_tar_variants_are_scanned_or_unsafe() -> None:
    import gzip
    import tarfile

    evil = {"weights.pkl": pickle.dumps(_Evil(), protocol=4)}
    for fmt in (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        _assert_unsafe_os_system(scan_bytes(_tar_bytes(evil, fmt=fmt), "m.tar"), "m.tar!weights.pkl")
    _assert_unsafe_os_system(scan_bytes(gzip.compress(_tar_bytes(evil)), "m.tar.gz"), "m.tar.gz!weights.pkl")
    # an old v7 tar has no magic: found by its header checksum
    v7 = bytearray(_tar_bytes(evil, fmt=tarfile.USTAR_FORMAT))
    v7[257:265] = b"\x00" * 8
    v7[148:156] = b"%06o\x00 " % (sum(v7[:148]) + 8 * 32 + sum(v7[156:512]))
    _assert_unsafe_os_system(scan_bytes(bytes(v7), "m.bin"), "m.bin!weights.pkl")
    truncated = _tar_bytes({"weights.pkl": pickle.dumps(list(range(2000)), protocol=4)})
    assert not scan_bytes(truncated[:1500], "m.tar").clean


def test_tar_links_and_paths_that_leave_the_archive_are_unsafe() -> None:
    inside = scan_bytes(_tar_bytes({"zoneinfo/UTC": b"TZif", "zoneinfo/Etc/UTC": b"TZif"}, links={"zoneinfo/Zulu": "Etc/UTC"}), "tz.tar")
    assert inside.clean, inside.issues  # a link to another member: that member is scanned itself
    for links, members, where in [
        ({"weights.pkl": "/etc/passwd"}, {}, "m.tar!weights.pkl"),
        ({"model/weights.pkl": "../../home/user/.ssh/id_rsa"}, {}, "m.tar!model/weights.pkl"),
        ({}, {"../outside.pkl": pickle.dumps([1], protocol=4)}, "m.tar!../outside.pkl"),
    ]:
        report = scan_bytes(_tar_bytes({"a.txt": b"hi", **members}, links=links), "m.tar")
        assert [(i.path, i.kind) for i in report.issues] == [(where, "unsafe-path")], report.issues

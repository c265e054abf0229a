"""The test material of picklescan, modelscan and fickling, rebuilt as bytes and scanned (never loaded).

Sources (read, not copied): picklescan ``tests/init_data_files.py`` (its generated data files and
advisories GHSA-*), modelscan ``tests/test_modelscan.py`` (the pickle/NumPy fixtures), fickling
``test/test_bypasses.py`` (hand-assembled bypasses; the malformed-frame files are in
``test_scanning_fail_closed.py``).  What needs PyTorch, TensorFlow, Keras or dill to build is not
rebuilt here (none of them is a dependency).  Expectations: every malicious file unsafe, every
malformed file unsafe, every benign file clean.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile

import numpy as np
import pytest

from secure_pipeline.scanning import scan_bytes

_PAYLOAD = "__import__('os').system('whoami')"


def _u(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _call(module: str, name: str, protocol: int) -> bytes:
    """``module.name(_PAYLOAD)`` as the pickler writes it for ``protocol`` (hand-assembled: the
    target module need not be installed)."""
    if protocol >= 4:
        return b"\x80" + bytes([protocol]) + _u(module) + _u(name) + b"\x93" + _u(_PAYLOAD) + b"\x85R."
    if protocol < 3 and module == "builtins":
        module = "__builtin__"
    head = b"\x80" + bytes([protocol]) if protocol >= 2 else b""
    return head + b"c" + module.encode() + b"\n" + name.encode() + b"\n(V" + _PAYLOAD.encode() + b"\ntR."


# the callables of picklescan's generated files and advisories, and of fickling's bypass tests
_TARGETS = [
    ("builtins", "eval"), ("builtins", "exec"), ("builtins", "compile"), ("builtins", "getattr"), ("builtins", "apply"),
    ("builtins", "open"), ("builtins", "breakpoint"), ("builtins", "__import__"), ("builtins", "globals"),
    ("os", "system"), ("posix", "system"), ("nt", "system"), ("os", "popen"), ("subprocess", "run"),
    ("subprocess", "Popen"), ("subprocess", "check_output"), ("http.client", "HTTPSConnection"), ("requests.api", "get"),
    ("aiohttp.client", "ClientSession"), ("socket", "create_connection"), ("sys", "exit"), ("pickle", "loads"),
    ("_pickle", "loads"), ("runpy", "_run_code"), ("runpy", "run_path"), ("bdb", "Bdb.run"), ("pip", "main"),
    ("torch._inductor.codecache", "compile_file"), ("pydoc", "pipepager"), ("pydoc", "locate"), ("torch", "load"),
    ("venv", "create"), ("timeit", "timeit"), ("numpy.testing._private.utils", "runstring"),
    ("torch.utils.bottleneck.__main__", "run_cprofile"), ("torch.utils.bottleneck.__main__", "run_autograd_prof"),
    ("torch._dynamo.guards", "GuardBuilder.get"), ("torch.fx.experimental.symbolic_shapes", "ShapeEnv.evaluate_guards_expression"),
    ("torch.utils.collect_env", "run"), ("torch.utils.collect_env", "run_and_read_all"),
    ("torch.utils.data.datapipes.utils.decoder", "basichandlers"), ("torch.jit.unsupported_tensor_ops", "execWrapper"),
    ("torch.utils._config_module", "ConfigModule.load_config"), ("trace", "Trace.run"), ("trace", "Trace.runctx"),
    ("profile", "Profile.run"), ("profile", "Profile.runctx"), ("profile", "run"), ("cProfile", "run"), ("cProfile", "runctx"),
    ("lib2to3.pgen2.grammar", "Grammar.loads"), ("lib2to3.pgen2.pgen", "ParserGenerator.make_label"),
    ("idlelib.debugobj", "ObjectTreeItem.SetText"), ("idlelib.autocomplete", "AutoComplete.get_entity"),
    ("idlelib.autocomplete", "AutoComplete.fetch_completions"), ("code", "InteractiveInterpreter.runcode"),
    ("code", "InteractiveInterpreter.runsource"), ("idlelib.calltip", "Calltip.fetch_tip"), ("idlelib.calltip", "get_entity"),
    ("ensurepip", "_run_pip"), ("pkgutil", "resolve_name"), ("idlelib.run", "Executive.runcode"),
    ("idlelib.pyshell", "ModifiedInterpreter.runcommand"), ("idlelib.pyshell", "ModifiedInterpreter.runcode"),
    ("doctest", "debug_script"), ("logging", "FileHandler"), ("asyncio.unix_events", "_UnixSubprocessTransport._start"),
    ("distutils.file_util", "write_file"), ("ctypes", "CDLL"), ("operator", "methodcaller"), ("_operator", "methodcaller"),
    ("operator", "attrgetter"), ("pty", "spawn"), ("numpy.f2py.crackfortran", "getlincoef"), ("uuid", "_get_command_stdout"),
    ("_osx_support", "_read_output"), ("_osx_support", "_find_build_tool"), ("_aix_support", "_read_cmd_output"),
    ("imaplib", "IMAP4_stream"), ("_io", "FileIO"), ("io", "FileIO"), ("urllib.request", "urlopen"),
    ("_pyrepl.pager", "pipe_pager"), ("test.support.script_helper", "assert_python_ok"), ("types", "CodeType"),
    ("types", "FunctionType"), ("marshal", "loads"), ("importlib", "import_module"), ("multiprocessing.util", "spawnv_passfds"),
    ("smtplib", "SMTP"), ("ftplib", "FTP"), ("telnetlib", "Telnet"), ("ssl", "get_server_certificate"), ("pathlib", "os.system"),
    ("ast", "parse"), ("cloudpickle.cloudpickle", "_make_function"), ("webbrowser", "open"), ("shutil", "rmtree"),
    ("numpy", "load"), ("pandas", "read_pickle"), ("joblib", "load"), ("functools", "partial"),
]  # fmt: skip


@pytest.mark.parametrize("protocol", [0, 2, 4])
@pytest.mark.parametrize(("module", "name"), _TARGETS, ids=[f"{m}.{n}" for m, n in _TARGETS])
def test_malicious_call_is_unsafe(module: str, name: str, protocol: int) -> None:
    report = scan_bytes(_call(module, name, protocol), "model.pkl")
    assert not report.clean
    assert any(i.kind in {"unsafe-import", "unsafe-call"} for i in report.issues), report.issues


# --------------------------------------------------------------------------------------------
# picklescan's hand-assembled and structural files
# --------------------------------------------------------------------------------------------

_STORED_OS_SYSTEM = b"Vos\np2\n0Vsystem\np3\n0Vtorch\np0\n0VLongStorage\np1\n0g2\ng3\n\x93(Vcat flag.txt\ntR."


def _zip(name: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr(name, data)
    return buf.getvalue()


def _zip_with_flags(data: bytes, flags: int) -> bytes:
    """Set general-purpose flag bits in the local header and the central directory entry."""
    out = bytearray(_zip("data.pkl", data))
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = out.index(signature) + offset
        out[at : at + 2] = struct.pack("<H", struct.unpack("<H", out[at : at + 2])[0] | flags)
    return bytes(out)


def _7z(name: str, data: bytes) -> bytes:
    import py7zr

    buf = io.BytesIO()
    with py7zr.SevenZipFile(buf, "w") as archive:
        archive.writestr(data, name)
    return buf.getvalue()


def _magic_bypass() -> bytes:
    """Legacy torch.save: pickles one after another; the magic number comes from eval."""
    return b"".join(
        [_call("builtins", "eval", 2), pickle.dumps(1001, protocol=2), pickle.dumps({}, protocol=2), pickle.dumps([], protocol=2), _call("os", "system", 2), pickle.dumps(None, protocol=2)]
    )


def _object_npy(payload: bytes) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    return header.getvalue() + payload


def _cloudpickled_function() -> bytes:
    import cloudpickle

    def _not_importable(x: str) -> None:  # a local function: cloudpickle ships its code
        print(x)

    return cloudpickle.dumps(_not_importable)  # dumping only


MALICIOUS = {
    "malicious0 (sour pickles)": b"c__builtin__\nglobals\n(tRp100\n0c__builtin__\ncompile\n(S'fl=open(\"/etc/passwd\");picklesmashed=fl.read();"
    b"'\nS''\nS'exec'\ntRp101\n0c__builtin__\neval\n(g101\ng100\ntRp102\n0c__builtin__\ngetattr\n(c__builtin__\n"
    b"dict\nS'get'\ntRp103\n0c__builtin__\napply\n(g103\n(g100\nS'picklesmashed'\nltRp104\n0g104\n.",
    "malicious10 (INST)": b"(S'raise RuntimeError(\"Injection running\")'\ni__builtin__\nexec\n.",
    "malicious11 (memo STACK_GLOBAL)": _STORED_OS_SYSTEM,
    "malicious-invalid-bytes": _STORED_OS_SYSTEM + b"\n\n\t\t",
    "keyerror-exploit": b"\x80\x04cos\nsystem\nVecho pwned\n\x85R0\x8c\x02os\x94h\x03h\x00\x93K\x42.",
    "type-confusion-exploit": b"\x80\x04cos\nsystem\nVecho pwned\n\x85R0J\x2a\x00\x00\x00\x94\x8c\x02os\x94h\x00h\x01\x93K\x42.",
    "malicious23 (STRING + STACK_GLOBAL)": b"S'os'\nS'system'\n\x93S'ls'\n\x85R.",
    "malicious6 (benign then malicious)": pickle.dumps(["a", "b", "c"]) + _call("requests.api", "get", 4),
    "malicious1.zip": _zip("data.pkl", _call("builtins", "eval", 4)),
    "malicious1_wrong_ext.zip": _zip("data.txt", _call("builtins", "eval", 4)),
    "malicious1.7z": _7z("data.pkl", _call("builtins", "eval", 4)),
    "pytorch_magic_bypass.pt": _magic_bypass(),
    "dns_exfiltration.npy": _object_npy(_call("ssl", "get_server_certificate", 3)),
    "cloudpickle function": _cloudpickled_function(),
    "unsafe_numpy.npy (modelscan)": _object_npy(pickle.dumps(np.ones(3), protocol=4)[:-1] + b"0" + _call("os", "system", 4)[2:]),
    "obj then pop (fickling)": b"\x80\x04(" + _u("smtplib") + _u("SMTP") + b"\x93" + _u("127.0.0.1") + b"o0N.",
}

MALFORMED = {
    "broken_model (truncated exec)": b"cbuiltins\nexec\n(X>\nf = open('my_file.txt', 'a'); f.write('Malicious'); f.close()tRX.",
    "malicious1_central_directory.zip": _zip("data.pkl", _call("builtins", "eval", 4)).replace(b"data.pkl", b"datap.kl", 1),
    "malicious1_crc.zip": _zip("data.pkl", pickle.dumps({"code": "print('456')"}, protocol=4)).replace(b"print('456')", b"print('123')", 1),
    "malicious1_0x1.zip (encrypted flag)": _zip_with_flags(_call("builtins", "eval", 4), 0x1),
    "malicious1_0x20.zip (patched data flag)": _zip_with_flags(_call("builtins", "eval", 4), 0x20),
    "malicious1_0x40.zip (strong encryption flag)": _zip_with_flags(_call("builtins", "eval", 4), 0x40),
}


def _npz(compressed: bool, dtype: object) -> bytes:
    buf = io.BytesIO()
    save = np.savez_compressed if compressed else np.savez
    save(buf, a=np.array([0, 1, 2], dtype=dtype), b=np.array([3, 4, 5], dtype=dtype))
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=True)  # saving only
    return buf.getvalue()


_TUPLES = np.empty((2, 2), dtype=object)
_TUPLES[:] = [(1, 2), (3, 4)]

BENIGN = {
    **{f"benign0_v{p}.pkl": pickle.dumps(["a", "b", "c"], protocol=p) for p in range(6)},
    "object_array.npy": _npy(_TUPLES),
    "int_array.npy": _npy(np.array([[1, 2], [3, 4]])),
    "object_arrays.npz": _npz(False, object),
    "int_arrays.npz": _npz(False, int),
    "object_arrays_compressed.npz": _npz(True, object),
    "int_arrays_compressed.npz": _npz(True, int),
    "safe_numpy.npy (modelscan)": _npy(np.array([[1, 2, 3], [4, 5, 6]])),
    "not_a_pickle.bin": b"cmod\n\xf8\n",
    "bad_pytorch.pt (a PNG header)": b"\211PNG\r\n\032\n",
    "safe builtins (fickling)": pickle.dumps({"d": dict(a=1), "s": {1, 2}, "f": frozenset({3})}, protocol=4),
}


@pytest.mark.parametrize("name", sorted(MALICIOUS))
def test_peer_malicious_file_is_unsafe(name: str) -> None:
    report = scan_bytes(MALICIOUS[name], name)
    assert not report.clean
    assert any(i.kind in {"unsafe-import", "unsafe-call", "unresolvable-import"} for i in report.issues), report.issues


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_peer_malformed_file_is_unsafe(name: str) -> None:
    report = scan_bytes(MALFORMED[name], name)
    assert not report.clean
    assert any(i.kind in {"unparseable", "uninspectable"} for i in report.issues), report.issues


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_peer_benign_file_is_clean(name: str) -> None:
    report = scan_bytes(BENIGN[name], name)
    assert report.clean, report.issues

"""Tests for secure_pipeline.scanning.

Malicious fixtures are built as bytes: hand-assembled opcodes, or ``pickle.dumps``/``joblib.dump``/
``np.save`` of objects whose ``__reduce__`` returns a dangerous callable.  Dumping is harmless;
nothing in this file ever *loads* a pickle, joblib, object-dtype ``.npy`` or skops file.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_iris
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from secure_pipeline.errors import BadInputError
from secure_pipeline.scanning import SCHEMA, ScanReport, is_allowed_global, scan_bytes, scan_path

from conftest import require_absent

# --------------------------------------------------------------------------------------------
# Fixture builders
# --------------------------------------------------------------------------------------------


class _Evil:
    """Pickles as ``os.system("echo pwned")``. Only ever dumped."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


class _EvilEval:
    def __reduce__(self):
        return (eval, ("__import__('os').system('echo pwned')",))


# os.system via GLOBAL, protocol 0, hand-assembled
P0_OS_SYSTEM = b"cos\nsystem\n(S'echo pwned'\ntR."
# same via STACK_GLOBAL, protocol 4, hand-assembled
P4_OS_SYSTEM = (
    b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00"  # PROTO 4, FRAME (length unused by scanner)
    b"\x8c\x02os\x94"  # SHORT_BINUNICODE 'os', MEMOIZE
    b"\x8c\x06system\x94"  # SHORT_BINUNICODE 'system', MEMOIZE
    b"\x93\x94"  # STACK_GLOBAL, MEMOIZE
    b"\x8c\necho pwned\x94\x85\x94R\x94."  # arg, TUPLE1, REDUCE, STOP
)
# the module/name strings are pushed, memoized, popped, and fetched back later through BINGET
P4_MEMO_INDIRECTION = (
    b"\x80\x04"
    b"\x8c\x02os\x94"  # memo[0] = 'os'
    b"\x8c\x06system\x94"  # memo[1] = 'system'
    b"00"  # POP, POP: the stack no longer shows them
    b"N0"  # noise
    b"h\x00h\x01\x93"  # BINGET 0, BINGET 1, STACK_GLOBAL -> os.system
    b"\x8c\necho pwned\x85R."
)
# builtins.getattr(builtins.__import__('os'), 'system')('echo pwned')
GETATTR_CHAIN = (
    b"\x80\x04"
    b"\x8c\x08builtins\x8c\x07getattr\x93"
    b"\x8c\x08builtins\x8c\n__import__\x93\x8c\x02os\x85R"
    b"\x8c\x06system\x86R"
    b"\x8c\necho pwned\x85R."
)


def _u(text: str) -> bytes:
    """SHORT_BINUNICODE opcode for ``text``."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _evil_pickle(protocol: int = 4) -> bytes:
    return pickle.dumps(_Evil(), protocol=protocol)


def _zip_bytes(members: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _joblib_bytes(obj: object, compress: object = 0) -> bytes:
    buf = io.BytesIO()
    joblib.dump(obj, buf, compress=compress)
    return buf.getvalue()


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)  # saving only
    return buf.getvalue()


def _safetensors_bytes() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    return struct.pack("<Q", len(header)) + header + np.ones(2, dtype="<f4").tobytes()


def _details(report: ScanReport) -> set[str]:
    return {issue.detail for issue in report.issues}


def _kinds(report: ScanReport) -> set[str]:
    return {issue.kind for issue in report.issues}


def _assert_os_system(report: ScanReport) -> None:
    assert not report.clean
    assert _details(report) & {"os.system", "posix.system"}, report.issues
    assert "unsafe-import" in _kinds(report)


@pytest.fixture(scope="module")
def models() -> dict[str, object]:
    X, y = load_iris(return_X_y=True, as_frame=True)
    df = X.copy()
    df["colour"] = np.where(y > 0, "red", "blue")
    ct = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), ["colour"]), ("num", StandardScaler(), list(X.columns))]
    )
    return {
        "logreg": LogisticRegression(max_iter=500).fit(X.to_numpy(), y),
        "hgb": HistGradientBoostingClassifier(max_iter=5).fit(X.to_numpy(), y),
        "forest": RandomForestClassifier(n_estimators=3, random_state=0).fit(X.to_numpy(), y),
        "pipeline": Pipeline([("prep", ct), ("clf", LogisticRegression(max_iter=500))]).fit(df, y),
    }


# --------------------------------------------------------------------------------------------
# Malicious content
# --------------------------------------------------------------------------------------------


def test_protocol0_global_os_system() -> None:
    report = scan_bytes(P0_OS_SYSTEM, "model.pkl")
    _assert_os_system(report)
    issue = next(i for i in report.issues if i.detail == "os.system")
    assert issue.path == "model.pkl"
    assert issue.message == "model.pkl: imports os.system, which can run code when loaded"


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_dumped_os_system_every_protocol(protocol: int) -> None:
    _assert_os_system(scan_bytes(_evil_pickle(protocol), "m.pkl"))


def test_protocol4_stack_global() -> None:
    _assert_os_system(scan_bytes(P4_OS_SYSTEM, "m.pkl"))


def test_memo_indirection_is_resolved() -> None:
    report = scan_bytes(P4_MEMO_INDIRECTION, "m.pkl")
    _assert_os_system(report)


def test_builtins_eval() -> None:
    report = scan_bytes(pickle.dumps(_EvilEval(), protocol=2), "m.pkl")
    assert "builtins.eval" in _details(report)


def test_getattr_chain() -> None:
    report = scan_bytes(GETATTR_CHAIN, "m.pkl")
    assert {"builtins.getattr", "builtins.__import__"} <= _details(report)
    assert "unsafe-call" in _kinds(report)  # calling the result of getattr


def test_unresolvable_stack_global_is_unsafe() -> None:
    # module name is computed by a call (builtins.str(b'os')): the scanner cannot know it
    data = b"\x80\x04\x8c\x08builtins\x8c\x03str\x93C\x02os\x85R\x8c\x06system\x93N\x85R."
    report = scan_bytes(data, "m.pkl")
    assert "unresolvable-import" in _kinds(report)


def test_build_on_imported_class_is_unsafe() -> None:
    # BUILD (None, {"fit": ...}) on the class object itself: monkey-patching at load time
    data = b"\x80\x04" + _u("sklearn.linear_model._logistic") + _u("LogisticRegression") + b"\x93"
    data += b"N}" + _u("fit") + b"Ns\x86b."  # state (None, {"fit": None}), BUILD
    report = scan_bytes(data, "m.pkl")
    assert "unsafe-mutation" in _kinds(report)


def test_persistent_id_and_extension_registry_are_unsafe() -> None:
    assert "persistent-load" in _kinds(scan_bytes(b"\x80\x02\x8c\x01xQ.", "m.pkl"))
    assert "extension-registry" in _kinds(scan_bytes(b"\x80\x02\x82\x01.", "m.pkl"))


@pytest.mark.parametrize("name", ["weights.json", "model.bin", "model", "notes.txt"])
def test_malicious_pickle_under_any_name(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(_evil_pickle())
    report = scan_path(tmp_path)
    _assert_os_system(report)
    assert {i.path for i in report.issues} == {name}
    assert report.to_json()["files"] == [{"path": name, "format": "pickle", "status": "unsafe"}]


def test_protocol0_pickle_disguised_as_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_bytes(P0_OS_SYSTEM)
    _assert_os_system(scan_path(tmp_path / "config.json"))


def test_truncated_protocol0_pickle_still_flags_the_call() -> None:
    # the unpickler runs os.system before it notices the missing STOP
    report = scan_bytes(P0_OS_SYSTEM[:-1], "m.txt")
    assert "os.system" in _details(report)


def test_inside_zip_and_nested_zip() -> None:
    inner = _zip_bytes({"payload/evil.pkl": _evil_pickle()})
    report = scan_bytes(_zip_bytes({"inner.zip": inner, "readme.txt": b"hello"}), "outer.zip")
    _assert_os_system(report)
    assert {i.path for i in report.issues} == {"outer.zip!inner.zip!payload/evil.pkl"}

    flat = scan_bytes(_zip_bytes({"data.pkl": _evil_pickle()}, zipfile.ZIP_STORED), "m.pt")
    _assert_os_system(flat)


def test_zip_nested_too_deep_is_unsafe() -> None:
    data = b"plain text"
    for i in range(5):
        data = _zip_bytes({f"level{i}": data})
    assert "too-large" in _kinds(scan_bytes(data, "deep.zip"))


def test_npz_with_object_array() -> None:
    buf = io.BytesIO()
    np.savez(buf, weights=np.ones(3), extra=np.array([_Evil()], dtype=object))
    report = scan_bytes(buf.getvalue(), "arrays.npz")
    _assert_os_system(report)
    assert {i.path for i in report.issues} == {"arrays.npz!extra.npy"}


@pytest.mark.parametrize("compress", [0, 3, "gzip", "bz2", "xz", "lzma"])
def test_joblib_malicious(compress: object) -> None:
    payload = {"model": np.arange(10.0), "evil": _Evil(), "more": np.ones((3, 3))}
    _assert_os_system(scan_bytes(_joblib_bytes(payload, compress), "model.joblib"))


def test_joblib_zlib_compressed_under_other_extension(tmp_path: Path) -> None:
    (tmp_path / "model.dat").write_bytes(_joblib_bytes([_Evil()], compress=("zlib", 3)))
    _assert_os_system(scan_path(tmp_path))


def test_joblib_object_array_nested_pickle() -> None:
    data = _joblib_bytes(np.array([1, _Evil()], dtype=object))
    _assert_os_system(scan_bytes(data, "model.joblib"))


def test_joblib_array_bytes_that_plain_pickle_would_execute() -> None:
    # A NumpyArrayWrapper whose "array bytes" are opcodes: joblib skips them as data, but
    # pickle.load (which knows nothing about joblib) would execute them.
    from joblib.numpy_pickle import NumpyArrayWrapper

    hidden = b"cos\nsystem\n(S'echo pwned'\ntR0"  # ... POP, so the stream stays balanced
    wrapper = NumpyArrayWrapper(np.ndarray, (len(hidden),), "C", np.dtype("u1"), numpy_array_alignment_bytes=None)
    base = pickle.dumps(wrapper, protocol=2)
    assert base.endswith(b"b.")
    crafted = base[:-1] + hidden + b"."
    _assert_os_system(scan_bytes(crafted, "model.joblib"))
    # protocol 4 frames the stream: bytes inserted inside the frame are malformed framing too
    framed = pickle.dumps(wrapper, protocol=4)
    report = scan_bytes(framed[:-1] + hidden + b".", "model.joblib")
    assert any("malformed pickle framing" in i.detail for i in report.issues), report.issues


def test_joblib_array_bytes_that_change_an_allowed_class_under_plain_pickle() -> None:
    # read as opcodes by pickle.load, the "array bytes" give an allowed class a new attribute
    from joblib.numpy_pickle import NumpyArrayWrapper

    hidden = b"csklearn.base\nBaseEstimator\n(N}S'predict'\nI1\nstb0"
    wrapper = NumpyArrayWrapper(np.ndarray, (len(hidden),), "C", np.dtype("u1"), numpy_array_alignment_bytes=None)
    crafted = pickle.dumps(wrapper, protocol=2)[:-1] + hidden + b"."
    report = scan_bytes(crafted, "model.joblib")
    assert ("unsafe-mutation", "sklearn.base.BaseEstimator (BUILD)") in {(i.kind, i.detail) for i in report.issues}, report.issues


def test_object_npy_with_malicious_payload() -> None:
    header = io.BytesIO()  # write_array_header_1_0 writes the magic string and the header
    np.lib.format.write_array_header_1_0(header, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    data = header.getvalue() + _evil_pickle(3)
    assert data.startswith(b"\x93NUMPY")
    _assert_os_system(scan_bytes(data, "weights.npy"))
    # and via np.save of an object array
    _assert_os_system(scan_bytes(_npy_bytes(np.array([_Evil()], dtype=object)), "w.npy"))


def test_truncated_pickle_is_unparseable(models: dict[str, object]) -> None:
    data = pickle.dumps(models["logreg"], protocol=4)
    report = scan_bytes(data[: len(data) // 2], "model.pkl")
    assert not report.clean
    assert "unparseable" in _kinds(report)


def test_truncated_joblib_and_gzip_are_unparseable(models: dict[str, object]) -> None:
    plain = _joblib_bytes(models["forest"])
    assert "unparseable" in _kinds(scan_bytes(plain[:-10], "m.joblib"))
    gz = _joblib_bytes(models["forest"], compress="gzip")
    assert "unparseable" in _kinds(scan_bytes(gz[: len(gz) - 20], "m.joblib.gz"))


def test_zip_with_bad_crc_is_unsafe(models: dict[str, object]) -> None:
    member = pickle.dumps(models["logreg"])
    data = bytearray(_zip_bytes({"model.pkl": member}, zipfile.ZIP_STORED))
    offset = data.index(member) + len(member) // 2  # a byte inside a BINBYTES payload
    data[offset] ^= 0xFF
    report = scan_bytes(bytes(data), "archive.zip")
    assert not report.clean
    assert any(i.kind == "unparseable" and "CRC" in i.detail for i in report.issues), report.issues


def test_garbage_after_zip_magic_is_unsafe() -> None:
    assert "unparseable" in _kinds(scan_bytes(b"PK\x03\x04" + b"\x00" * 40, "broken.zip"))


def _rewrite_skops_schema(data: bytes, old: str, new: str) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    members = {}
    for name in src.namelist():
        content = src.read(name)
        if name == "schema.json":
            text = content.decode()
            assert old in text
            content = text.replace(old, new, 1).encode()
        members[name] = content
    return _zip_bytes(members)


@pytest.mark.parametrize(
    ("replacement", "expected"),
    [
        ('"__class__": "system",\n  "__module__": "os"', "os.system"),
        ('"__class__": "eval",\n  "__module__": "builtins"', "builtins.eval"),
    ],
)
def test_skops_with_untrusted_type(tmp_path: Path, models: dict[str, object], replacement: str, expected: str) -> None:
    original = sio.dumps(models["logreg"])
    tampered = _rewrite_skops_schema(
        original, '"__class__": "LogisticRegression",\n  "__module__": "sklearn.linear_model._logistic"', replacement
    )
    path = tmp_path / "model.skops"
    path.write_bytes(tampered)
    report = scan_path(path)
    assert not report.clean
    assert any(i.kind == "untrusted-type" and i.detail == expected for i in report.issues), report.issues
    assert report.files[0].format == "skops"


def test_symlink_inside_directory_is_reported_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside.pkl"
    outside.write_bytes(_evil_pickle())
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "weights.npy").write_bytes(_npy_bytes(np.ones(3)))
    (model_dir / "linked.pkl").symlink_to(outside)
    (model_dir / "linked_dir").symlink_to(tmp_path)
    report = scan_path(model_dir)
    assert {(i.path, i.kind) for i in report.issues} == {("linked.pkl", "symlink"), ("linked_dir", "symlink")}
    assert report.files_scanned == 3


def test_compressed_garbage_is_unparseable() -> None:
    assert "unparseable" in _kinds(scan_bytes(b"\x1f\x8b\x08\x00garbage-not-deflate", "m.gz"))


def test_pickle_then_appended_pickle_is_scanned() -> None:
    clean = pickle.dumps({"a": 1}, protocol=4)
    _assert_os_system(scan_bytes(clean + _evil_pickle(), "two.pkl"))


# --------------------------------------------------------------------------------------------
# Clean content
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["logreg", "hgb", "forest", "pipeline"])
def test_fitted_sklearn_models_are_clean(models: dict[str, object], name: str) -> None:
    model = models[name]
    for label, data in [
        ("pickle2", pickle.dumps(model, protocol=2)),
        ("pickle5", pickle.dumps(model, protocol=5)),
        ("joblib", _joblib_bytes(model)),
        ("joblib-zlib", _joblib_bytes(model, compress=3)),
        ("joblib-gzip", _joblib_bytes(model, compress="gzip")),
        ("skops", sio.dumps(model)),
    ]:
        report = scan_bytes(data, f"{name}.{label}")
        assert report.clean, (label, report.issues)


def test_numpy_scipy_pandas_objects_are_clean() -> None:
    frame = pd.DataFrame(
        {
            "x": np.arange(4.0),
            "s": ["a", "b", None, "d"],
            "c": pd.Categorical(["u", "v", "u", "v"]),
            "t": pd.date_range("2024-01-01", periods=4, tz="UTC"),
            "i": pd.array([1, None, 3, 4], dtype="Int64"),
        }
    )
    objects = {
        "array": np.arange(12.0).reshape(3, 4),
        "structured": np.zeros(2, dtype=[("a", "<i4"), ("b", "<U3")]),
        "recarray": np.rec.array([(1, 2.0)], dtype=[("a", "<i4"), ("b", "<f8")]),
        "object_strings": np.array(["a", "b", None], dtype=object),
        "scalar": np.float32(1.5),
        "rng": np.random.default_rng(0),
        "csr": sp.csr_matrix(np.eye(3)),
        "coo_array": sp.coo_array(np.eye(3)),
        "frame": frame,
        "series": pd.Series([1, 2, 3], index=pd.Index(["a", "b", "c"])),
    }
    for name, obj in objects.items():
        for data in (pickle.dumps(obj, protocol=2), pickle.dumps(obj, protocol=5), _joblib_bytes(obj)):
            report = scan_bytes(data, name)
            assert report.clean, (name, report.issues)


def test_plain_files_are_clean(tmp_path: Path) -> None:
    files = {
        "weights.npy": _npy_bytes(np.arange(5, dtype=np.int64)),
        "arrays.npz": None,
        "config.json": json.dumps({"c": 1, "cos": "system"}).encode(),
        "requirements.txt": b"certifi\nnumpy\nscikit-learn==1.9.1\n",
        "notes.md": "# Model\ncos\nsystem\n(S'not a pickle'\n\u00e9".encode(),
        "model.safetensors": _safetensors_bytes(),
        "empty.bin": b"",
        "random.bin": bytes(range(256)) * 4,
    }
    buf = io.BytesIO()
    np.savez_compressed(buf, a=np.ones(3), b=np.zeros((2, 2)))
    files["arrays.npz"] = buf.getvalue()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    report = scan_path(tmp_path)
    assert report.clean, report.issues
    formats = {f.path: f.format for f in report.files}
    assert formats["weights.npy"] == "npy"
    assert formats["arrays.npz"] == "npz"
    assert formats["config.json"] == "json"
    assert formats["model.safetensors"] == "safetensors"
    assert report.files_scanned == len(files)


def test_mlflow_style_model_directory_is_clean(tmp_path: Path, models: dict[str, object]) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text(
        "artifact_path: model\nflavors:\n  sklearn:\n    pickled_model: model.skops\n"
        "    serialization_format: skops\n    sklearn_version: 1.9.1\n"
    )
    sio.dump(models["pipeline"], model_dir / "model.skops")
    (model_dir / "requirements.txt").write_text("mlflow==3.17.0\nscikit-learn==1.9.1\nskops==0.16.0\n")
    (model_dir / "conda.yaml").write_text("channels:\n- conda-forge\ndependencies:\n- python=3.11\n")
    git = model_dir / ".git"
    git.mkdir()
    (git / "objects.pkl").write_bytes(_evil_pickle())  # .git is not part of the model
    report = scan_path(model_dir)
    assert report.clean, report.issues
    assert {f.path for f in report.files} == {"MLmodel", "model.skops", "requirements.txt", "conda.yaml"}
    doc = report.to_json()
    assert doc["schema"] == SCHEMA == "secure-pipeline/model-scan/v1"
    assert doc["clean"] is True and doc["issues"] == [] and doc["files_scanned"] == 4
    json.dumps(doc)


def test_report_json_for_unsafe_directory(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "model.pkl").write_bytes(_evil_pickle())
    (tmp_path / "ok.json").write_text("{}")
    doc = scan_path(tmp_path).to_json()
    assert doc["clean"] is False
    assert doc["files_scanned"] == 2
    assert {"path": "sub/model.pkl", "format": "pickle", "status": "unsafe"} in doc["files"]
    issue = next(i for i in doc["issues"] if i["kind"] == "unsafe-import")
    assert issue["path"] == "sub/model.pkl"
    assert issue["detail"] in {"os.system", "posix.system"}
    assert set(issue) == {"path", "kind", "detail", "message"}


def test_missing_path_is_bad_input(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pkl"
    with pytest.raises(BadInputError) as excinfo:
        scan_path(missing)
    assert str(missing) in str(excinfo.value)
    assert excinfo.value.exit_code == 2


# --------------------------------------------------------------------------------------------
# Allowlist rule
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("sklearn.linear_model._logistic", "LogisticRegression"),
        ("sklearn.ensemble._hist_gradient_boosting.binning", "_BinMapper"),
        ("sklearn.tree._tree", "Tree"),
        ("sklearn.neighbors._kd_tree", "newObj"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy", "dtype"),
        ("numpy", "float64"),
        ("numpy.random._pickle", "__bit_generator_ctor"),
        ("scipy.sparse._csr", "csr_matrix"),
        ("pandas.core.internals.managers", "BlockManager"),
        ("pandas._libs.internals", "_unpickle_block"),
        ("builtins", "slice"),
        ("collections", "OrderedDict"),
        ("copyreg", "_reconstructor"),
        ("_codecs", "encode"),
        ("joblib.numpy_pickle", "NumpyArrayWrapper"),
        ("numpy.rec", "recarray"),
        # functions kept as values by fitted estimators
        ("sklearn.feature_selection._univariate_selection", "f_classif"),
        ("sklearn.cluster._kmeans", "_kmeans_single_lloyd"),
        ("numpy", "mean"),
        ("scipy._lib.array_api_compat.numpy._aliases", "asarray"),
        ("functools", "partial"),
    ],
)
def test_allowlist_accepts_reconstruct_helpers_and_classes(module: str, name: str) -> None:
    assert is_allowed_global(module, name)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("os", "system"),
        ("posix", "system"),
        ("subprocess", "Popen"),
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("builtins", "getattr"),
        ("builtins", "__import__"),
        ("builtins", "open"),
        ("builtins", "compile"),
        ("builtins", "globals"),
        ("numpy", "load"),
        ("numpy", "fromfile"),
        ("numpy.lib.npyio", "load"),
        ("numpy.lib._datasource", "DataSource"),
        ("numpy.testing", "assert_equal"),
        ("numpy.f2py", "compile"),
        ("numpy.ctypeslib", "load_library"),
        ("numpy.core", "_ufunc_reconstruct"),
        ("pandas", "read_pickle"),
        ("pandas", "eval"),
        ("pandas", "HDFStore"),
        ("pandas.io.pickle", "read_pickle"),
        ("pandas.core.computation.eval", "Expr"),
        ("sklearn.utils._testing", "TempMemmap"),
        ("sklearn.externals.joblib.numpy_pickle", "NumpyArrayWrapper"),
        ("sklearn.utils.parallel", "Parallel"),
        ("scipy.io", "netcdf_file"),
        ("scipy.io._fortran", "FortranFile"),
        ("joblib.numpy_pickle_compat", "NDArrayWrapper"),
        ("sklearn.tree._export", "export_graphviz"),
        ("sklearn.datasets._svmlight_format_io", "dump_svmlight_file"),
        ("numpy", "save"),
        ("numpy", "ndarray.tofile"),
        ("numpy ", "dtype"),
        # a trailing newline must not slip past the name checks (`$` matches before it)
        ("sklearn.io\n", "Reader"),
        ("sklearn.base", "BaseEstimator\n"),
        ("sklearn.metrics\n", "f_classif"),
    ],
)
def test_allowlist_rejects_dangerous_callables(module: str, name: str) -> None:
    assert not is_allowed_global(module, name)


def test_integer_literal_the_unpickler_accepts_does_not_stop_the_scan() -> None:
    # "I0x1" is a valid INT for the unpickler (int(s, 0)) but not for pickletools.genops;
    # a scanner that gives up there would miss the os.system call that follows.
    _assert_os_system(scan_bytes(b"I0x1\n0" + P0_OS_SYSTEM, "model.txt"))
    _assert_os_system(scan_bytes(b"\x80\x02I010\n0" + P0_OS_SYSTEM, "model.pkl"))


def test_safetensors_header_does_not_hide_a_pickle() -> None:
    report = scan_bytes(_safetensors_bytes(), "model.safetensors")
    assert report.clean and report.files[0].format == "safetensors"


def test_zip_bomb_and_decompression_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    from secure_pipeline.scanning import limits

    monkeypatch.setattr(limits, "RATIO_MIN_SIZE", 1000)
    monkeypatch.setattr(limits, "MAX_COMPRESSION_RATIO", 100)
    bomb = _zip_bytes({"zeros.bin": b"\x00" * 1_000_000})
    assert "too-large" in _kinds(scan_bytes(bomb, "bomb.zip"))

    monkeypatch.setattr(limits, "MAX_INSPECT_BYTES", 10_000)
    assert "too-large" in _kinds(scan_bytes(gzip.compress(b"\x00" * 1_000_000), "bomb.gz"))


def test_lz4_without_the_lz4_package_is_uninspectable() -> None:
    require_absent("lz4")
    assert "uninspectable" in _kinds(scan_bytes(b"\x04\x22\x4d\x18" + b"\x00" * 32, "model.lz4"))

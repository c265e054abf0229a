"""Model scanner: find serialized content that would run code or import untrusted types when loaded.

The scanner never loads what it scans.  Pickle streams are *walked* opcode by opcode with
a decoder built on ``pickletools`` opcode tables (pure parsing; text arguments are decoded the
way the C unpickler decodes them) through a small symbolic stack machine that mirrors the
unpickler closely enough to know which object every ``GLOBAL``/``STACK_GLOBAL``/``INST``/``OBJ``/
``REDUCE``/``NEWOBJ``/``BUILD`` acts on, without ever importing or calling anything.

Formats are recognised by content, never by file name:

* pickle (``\\x80`` + protocol byte; protocol 0/1 streams are recognised when they parse),
* joblib (a pickle whose ``NumpyArrayWrapper`` objects are followed by raw array bytes, which are
  skipped exactly as joblib reads them; object arrays in there are nested pickles and are walked),
  plain or compressed with zlib, gzip, bz2, xz or lzma (lz4 cannot be inspected -> unsafe),
* NumPy ``.npy`` (header parsed with ``numpy.lib.format``; an object dtype means the payload is a
  pickle, which is walked),
* zip archives (``.npz``, ``.skops``, PyTorch-style checkpoints, anything else): every member is
  read in full, so a bad CRC-32 is detected, and scanned by content, recursively,
* ``.skops`` (a zip with ``schema.json``): ``skops.io.get_untrusted_types`` (reads the schema only)
  and every reported type must pass the allowlist below,
* safetensors, JSON, text and other data that no loader turns into code: clean.

Fail closed: a file that looks like a pickle, archive or compressed stream but cannot be parsed
completely is unsafe ("unparseable"), and so is anything too large or too deeply nested to inspect.

The allowlist rule (``is_allowed_global``)
-----------------------------------------
An import ``module.name`` found in a pickle (after the protocol-2 ``__builtin__``/``copy_reg``
renames the unpickler itself applies) is allowed only if one of these holds:

1. it is in a short explicit list (``_EXACT_ALLOWED``): harmless builtins constructors
   (``builtins.set``, ``slice``, ``complex``, ...; never ``eval``/``exec``/``getattr``/
   ``__import__``/``open``/``compile``), ``collections.OrderedDict`` and friends,
   ``copyreg._reconstructor``, ``_codecs.encode``, ``datetime``/``decimal`` value types,
   ``joblib.numpy_pickle.NumpyArrayWrapper``, the NumPy reconstruct/dtype/scalar helpers, and the
   pyarrow helpers pandas string columns use;
2. the module is inside ``sklearn``, ``numpy``, ``scipy`` or ``pandas``, no part of its dotted
   path is an I/O, test, build or eval module (``io``, ``lib``, ``testing``, ``f2py``,
   ``ctypeslib``, ``externals``, ``datasets``, ``computation``, ``parallel``, ... see
   ``_DENIED_MODULE_PARTS``), and the *name* is either a class by naming convention (optional
   leading underscores, then an upper-case letter: ``LogisticRegression``, ``_BinMapper``) that
   is not a known file/process/thread touching class (``_DENIED_NAMES``: ``HDFStore``,
   ``DataSource``, ``Parallel``, ...), or a reconstruct helper by naming convention
   (``__pyx_unpickle_*``, ``_new_*``, ``_unpickle_*``, ``*_unpickle``, ``_reconstruct``,
   ``_frombuffer``, ``scalar``, ``newObj``, ``__*_ctor``), or a NumPy scalar type / ufunc exported
   from the top-level ``numpy`` module (``numpy.float64``, ``numpy.log1p``), or a SciPy sparse
   container class (``csr_matrix``, ``coo_array``, ...).

So functions such as ``numpy.load``, ``numpy.fromfile``, ``pandas.read_pickle``, ``pandas.eval``
or ``numpy.core._ufunc_reconstruct`` (imports by name) are never allowed.  On top of the import
check, the walk flags constructs that legitimate scikit-learn/NumPy/SciPy/pandas pickles never
contain: calling something that is not a directly imported global (this is how ``getattr``
chains and calls of callable instances work), mutating an imported global with
``BUILD``/``SETITEM``/``APPEND`` (monkey-patching), a ``STACK_GLOBAL`` whose module/name is not a
plain string known to the scanner, persistent IDs (``PERSID``/``BINPERSID``, which hand
control to loader code) and the copyreg extension registry (``EXT1/2/4``).  The legacy joblib
``NDArrayWrapper``/``ZNDArrayWrapper`` (joblib < 0.10) are not allowed: they make joblib
``numpy.load`` a side file with ``allow_pickle=True``.
"""

from __future__ import annotations

import _compat_pickle
import bz2
import io
import json
import lzma
import os
import pickletools
import re
import stat
import struct
import warnings
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from secure_pipeline.errors import BadInputError

__all__ = [
    "SCHEMA",
    "ScanIssue",
    "ScanFile",
    "ScanReport",
    "scan_path",
    "scan_bytes",
    "is_allowed_global",
]

SCHEMA = "secure-pipeline/model-scan/v1"

#: Total number of bytes (after decompression) the scanner will look at for one file on disk.
MAX_INSPECT_BYTES = 4 * 1024**3
#: Containers (zip archives, compressed streams) nested deeper than this are not inspected.
MAX_NESTING = 3
#: A zip member whose declared size exceeds its compressed size this many times (and is big) is a bomb.
MAX_COMPRESSION_RATIO = 1000
_RATIO_MIN_SIZE = 64 * 1024**2


# --------------------------------------------------------------------------------------------
# Public result types
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Allowlist
# --------------------------------------------------------------------------------------------

_EXACT_ALLOWED = frozenset(
    {
        # harmless builtins constructors
        "builtins.slice",
        "builtins.set",
        "builtins.frozenset",
        "builtins.bytearray",
        "builtins.bytes",
        "builtins.complex",
        "builtins.range",
        "builtins.dict",
        "builtins.list",
        "builtins.tuple",
        "builtins.int",
        "builtins.float",
        "builtins.str",
        "builtins.bool",
        "builtins.object",
        "collections.OrderedDict",
        "collections.defaultdict",
        "collections.deque",
        "collections.Counter",
        "copyreg._reconstructor",
        "_codecs.encode",
        "datetime.date",
        "datetime.datetime",
        "datetime.time",
        "datetime.timedelta",
        "datetime.timezone",
        "decimal.Decimal",
        "joblib.numpy_pickle.NumpyArrayWrapper",
        # NumPy reconstruct / dtype / scalar helpers
        "numpy.ndarray",
        "numpy.dtype",
        "numpy.matrix",
        "numpy.matrixlib.defmatrix.matrix",
        "numpy.recarray",
        "numpy.record",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.core.numeric._frombuffer",
        "numpy._core.numeric._frombuffer",
        "numpy.ma.core._mareconstruct",
        "numpy.ma.core.MaskedArray",
        "numpy.ma.MaskedArray",
        "numpy.ma.core.MaskedConstant",
        "numpy.ma.core.mvoid",
        # SciPy classes whose names do not follow the class convention
        "scipy.spatial._ckdtree.cKDTree",
        "scipy.spatial.ckdtree.cKDTree",
        # pyarrow helpers used by pandas' pyarrow-backed string / arrow columns
        "pyarrow.lib._restore_array",
        "pyarrow.lib._reconstruct_table",
        "pyarrow.lib._reconstruct_record_batch",
        "pyarrow.lib.py_buffer",
        "pyarrow.lib.type_for_alias",
        "pyarrow.lib.chunked_array",
        "pyarrow.lib.schema",
        "pyarrow.lib.field",
        "pyarrow.lib.scalar",
        "pyarrow.lib.list_",
        "pyarrow.lib.large_list",
        "pyarrow.lib.list_view",
        "pyarrow.lib.large_list_view",
        "pyarrow.lib.fixed_size_list",
        "pyarrow.lib.struct",
        "pyarrow.lib.map_",
        "pyarrow.lib.dictionary",
        "pyarrow.lib.timestamp",
        "pyarrow.lib.duration",
        "pyarrow.lib.time32",
        "pyarrow.lib.time64",
        "pyarrow.lib.decimal128",
        "pyarrow.lib.decimal256",
        "pyarrow.lib.binary",
        "pyarrow.lib.run_end_encoded",
    }
)

_LIBRARY_ROOTS = frozenset({"sklearn", "numpy", "scipy", "pandas"})

_DENIED_MODULE_PARTS = frozenset(
    {
        "io",
        "lib",
        "_lib",
        "testing",
        "_testing",
        "tests",
        "conftest",
        "f2py",
        "distutils",
        "ctypeslib",
        "externals",
        "datasets",
        "parallel",
        "_joblib",
        "computation",
        "plotting",
        "util",
        "_config",
        "compat",
        "_build_utils",
        "experimental",
        "misc",
        "_mocking",
        "_show_versions",
        "npyio",
        "_npyio_impl",
        "_datasource",
        "format",
        "clipboard",
        "_internal",
        "_pytesttester",
    }
)

_DENIED_NAMES = frozenset(
    {
        "DataSource",
        "HDFStore",
        "ExcelWriter",
        "ExcelFile",
        "TempMemmap",
        "Parallel",
        "LowLevelCallable",
        "NpzFile",
        "FortranFile",
        "MapWrapper",
        "CheckingClassifier",
        "CDLL",
        "PyDLL",
        "LibraryLoader",
        "Popen",
        "ZipFile",
        "NamedTemporaryFile",
        "TemporaryDirectory",
        "ThreadPoolExecutor",
        "ProcessPoolExecutor",
        "Pool",
        "ThreadPool",
    }
)

_CLASS_NAME = re.compile(r"^_*[A-Z][A-Za-z0-9_]*$")
_HELPER_NAME = re.compile(
    r"^(__pyx_unpickle_\w+|_new_[A-Za-z]\w*|_unpickle_\w+|\w+_unpickle|_reconstruct|_mareconstruct"
    r"|_frombuffer|scalar|newObj|__\w+_ctor)$"
)
_SPARSE_NAME = re.compile(r"^(bsr|coo|csc|csr|dia|dok|lil)_(matrix|array)$")
_IDENTIFIER_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _numpy_toplevel_names() -> frozenset[str]:
    """Scalar types and ufuncs exported by the top-level ``numpy`` module (pure value functions)."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        return frozenset()
    names: set[str] = set()
    for scalar_type in set(np.sctypeDict.values()):
        names.add(scalar_type.__name__)
    for extra in ("bool_", "str_", "bytes_", "void", "object_", "datetime64", "timedelta64", "generic"):
        names.add(extra)
    for attr in dir(np):
        if isinstance(getattr(np, attr, None), np.ufunc):
            names.add(attr)
    return frozenset(names)


_NUMPY_TOPLEVEL = _numpy_toplevel_names()


def is_allowed_global(module: str, name: str) -> bool:
    """Whether importing ``module.name`` from a pickle is allowed (see the module docstring)."""
    if not isinstance(module, str) or not isinstance(name, str):
        return False
    if not _IDENTIFIER_PATH.match(module) or not _IDENTIFIER_PATH.match(name) or "." in name:
        return False
    if f"{module}.{name}" in _EXACT_ALLOWED:
        return True
    parts = module.split(".")
    if parts[0] not in _LIBRARY_ROOTS:
        return False
    if any(part in _DENIED_MODULE_PARTS for part in parts[1:]):
        return False
    if _CLASS_NAME.match(name):
        return name.lstrip("_") not in _DENIED_NAMES and name not in _DENIED_NAMES
    if _HELPER_NAME.match(name):
        return True
    if module == "numpy" and name in _NUMPY_TOPLEVEL:
        return True
    if parts[0] == "scipy" and len(parts) > 1 and parts[1] == "sparse" and _SPARSE_NAME.match(name):
        return True
    return False


def _fix_imports(module: str, name: str, proto: int) -> tuple[str, str]:
    """Apply the Python 2 -> 3 renames the unpickler applies for protocols < 3."""
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            return _compat_pickle.NAME_MAPPING[(module, name)]
        if module in _compat_pickle.IMPORT_MAPPING:
            return _compat_pickle.IMPORT_MAPPING[module], name
    return module, name


# --------------------------------------------------------------------------------------------
# Scan context
# --------------------------------------------------------------------------------------------


@dataclass
class _Ctx:
    """Mutable state while scanning one file on disk (and everything nested inside it)."""

    budget: int = field(default_factory=lambda: MAX_INSPECT_BYTES)
    issues: list[ScanIssue] = field(default_factory=list)
    second_opinions: int = 0
    _seen: set[tuple[str, str, str]] = field(default_factory=set)

    def add(self, path: str, kind: str, detail: str, message: str) -> None:
        key = (path, kind, detail)
        if key not in self._seen:
            self._seen.add(key)
            self.issues.append(ScanIssue(path=path, kind=kind, detail=detail, message=message))

    def spend(self, nbytes: int) -> bool:
        """Account for ``nbytes`` more bytes to inspect; False once the budget is exhausted."""
        self.budget -= nbytes
        return self.budget >= 0


def _issue_message(path: str, kind: str, detail: str) -> str:
    templates = {
        "unsafe-import": "{p}: imports {d}, which can run code when loaded",
        "unsafe-call": "{p}: {d} when loaded, which can run code",
        "unsafe-mutation": "{p}: modifies the imported object {d} when loaded",
        "unresolvable-import": "{p}: imports a global whose name is computed at load time ({d}); treated as unsafe",
        "persistent-load": "{p}: uses pickle persistent IDs ({d}), which hand control to the loader's code",
        "extension-registry": "{p}: imports through the copyreg extension registry ({d}); treated as unsafe",
        "unparseable": "{p}: cannot be parsed completely ({d}); treated as unsafe",
        "untrusted-type": "{p}: references untrusted type {d}, which can run code when loaded",
        "too-large": "{p}: too large or too deeply nested to inspect ({d}); treated as unsafe",
        "uninspectable": "{p}: cannot be inspected ({d}); treated as unsafe",
        "symlink": "{p}: is a symbolic link ({d}); not followed, treated as unsafe",
        "special-file": "{p}: is not a regular file ({d}); treated as unsafe",
        "unreadable": "{p}: cannot be read ({d}); treated as unsafe",
        "second-opinion": "{p}: the second-opinion scanner flags {d}; treated as unsafe",
    }
    template = templates.get(kind, "{p}: {d}")
    return template.format(p=path, d=detail)


def _report(ctx: _Ctx, path: str, kind: str, detail: str) -> None:
    ctx.add(path, kind, detail, _issue_message(path, kind, detail))


# --------------------------------------------------------------------------------------------
# Symbolic pickle machine
# --------------------------------------------------------------------------------------------


class _Global:
    """An imported object, by name only."""

    __slots__ = ("module", "name", "allowed")

    def __init__(self, module: str, name: str, allowed: bool) -> None:
        self.module = module
        self.name = name
        self.allowed = allowed

    @property
    def dotted(self) -> str:
        return f"{self.module}.{self.name}"


class _Obj:
    """The result of a call (REDUCE, NEWOBJ, OBJ, INST): its class if known, arguments and state."""

    __slots__ = ("cls", "func", "args", "attrs", "state")

    def __init__(self, cls: Any, func: Any, args: Any) -> None:
        self.cls = cls
        self.func = func
        self.args = args
        self.attrs: dict[str, Any] = {}
        self.state: Any = None


class _Opaque:
    """A value the scanner does not track (large bytes, out-of-band buffers, persistent ids)."""

    __slots__ = ()


_OPAQUE = _Opaque()  # a value that is certainly not a str (bytes, buffers, arrays)
_ANY = _Opaque()  # a value that could be anything (a persistent object)


class _List(list):  # identity matters (memo), so not a plain list copy
    __slots__ = ()


class _Dict:
    __slots__ = ("pairs",)

    def __init__(self, pairs: list[tuple[Any, Any]] | None = None) -> None:
        self.pairs: list[tuple[Any, Any]] = pairs or []

    def as_str_dict(self) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        for k, v in self.pairs:
            if not isinstance(k, str):
                return None
            out[k] = v
        return out


class _Set:
    __slots__ = ("items",)

    def __init__(self, items: list[Any] | None = None) -> None:
        self.items: list[Any] = items or []


class _PickleError(Exception):
    """The stream is not a well-formed pickle (from the scanner's point of view)."""


@dataclass
class _Event:
    kind: str
    detail: str
    called: bool = False
    plausible: bool = True  # an import that could actually succeed (module and name are identifiers)


@dataclass
class _WalkResult:
    events: list[_Event]
    completed: bool
    error: str
    end: int
    joblib_skipped: bool
    skipped: tuple[tuple[int, int], ...] = ()
    nested: tuple[tuple[int, int], ...] = ()


_NAW = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_JOBLIB_ALIGNMENT_DEFAULT = None  # attribute missing -> joblib <= 1.1: no padding byte
_STRING_OPS = frozenset(
    {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"}
)
_BYTES_OPS = frozenset({"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"})
_SCALAR_OPS = frozenset({"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"})


class _PickleWalker:
    """Walks one pickle stream symbolically, starting at ``start`` in ``data``.

    With ``joblib=True`` a ``BUILD`` on a ``NumpyArrayWrapper`` consumes the array bytes that
    joblib writes right after it, exactly as ``joblib.numpy_pickle`` reads them.
    """

    def __init__(self, data: bytes, start: int, *, joblib: bool, depth: int = 0) -> None:
        self.data = data
        self.start = start
        self.joblib = joblib
        self.depth = depth
        self.stream = io.BytesIO(data)
        self.stream.seek(start)
        self.stack: list[Any] = []
        self.metastack: list[list[Any]] = []
        self.memo: dict[int, Any] = {}
        self.proto = 0
        self.events: list[_Event] = []
        self.joblib_skipped = False
        self.skipped: list[tuple[int, int]] = []  # joblib array bytes (raw data or nested pickles)
        self.nested: list[tuple[int, int]] = []  # nested object-array pickles among them

    # -- helpers -------------------------------------------------------------------------
    def _event(self, kind: str, detail: str, called: bool = False, plausible: bool = True) -> None:
        self.events.append(_Event(kind, detail, called, plausible))

    def _pop(self) -> Any:
        if not self.stack:
            raise _PickleError("stack underflow")
        return self.stack.pop()

    def _top(self) -> Any:
        if not self.stack:
            raise _PickleError("stack underflow")
        return self.stack[-1]

    def _pop_mark(self) -> list[Any]:
        if not self.metastack:
            raise _PickleError("MARK not found")
        items = self.stack
        self.stack = self.metastack.pop()
        return items

    @staticmethod
    def _decode_pair(arg: tuple[bytes, bytes]) -> tuple[str, str]:
        """Decode GLOBAL/INST's module and name lines as the unpickler does (UTF-8, no escapes)."""
        return arg[0].decode("utf-8", "surrogateescape"), arg[1].decode("utf-8", "surrogateescape")

    def _make_global(self, module: str, name: str) -> _Global:
        module, name = _fix_imports(module, name, self.proto)
        allowed = is_allowed_global(module, name)
        glob = _Global(module, name, allowed)
        if not allowed:
            self._event("unsafe-import", glob.dotted, plausible=_plausible_import(module, name))
        return glob

    def _call(self, func: Any, args: Any, how: str, init: bool = True) -> _Obj:
        """Record a call of ``func``; only direct calls of allowed globals are acceptable."""
        if isinstance(func, _Global):
            if func.module == "?":
                self._event("unresolvable-import", f"{how} of a global that cannot be resolved", called=True)
            elif not func.allowed:
                self._event("unsafe-import", func.dotted, called=True, plausible=_plausible_import(func.module, func.name))
            cls: Any = func
            if func.module == "copyreg" and func.name == "_reconstructor" and isinstance(args, tuple) and args:
                cls = args[0]
                if isinstance(cls, _Global) and not cls.allowed:
                    self._event("unsafe-import", cls.dotted, called=True, plausible=_plausible_import(cls.module, cls.name))
                elif not isinstance(cls, _Global):
                    self._event("unsafe-call", "reconstructs an object whose class is not an imported global")
            obj = _Obj(cls, func, args)
            if (func.module, func.name) == _NAW and init and isinstance(args, tuple):
                # NumpyArrayWrapper.__init__ runs: its defaults apply (16-byte alignment padding)
                obj.attrs.update({"allow_mmap": False, "numpy_array_alignment_bytes": 16})
                for key, value in zip(("subclass", "shape", "order", "dtype", "allow_mmap", "numpy_array_alignment_bytes"), args):
                    obj.attrs[key] = value
            return obj
        self._event("unsafe-call", f"{how} calls an object that is not an imported global", called=True)
        return _Obj(None, func, args)

    def _mutate(self, target: Any, what: str) -> None:
        if isinstance(target, _Global):
            self._event("unsafe-mutation", f"{target.dotted} ({what})", called=True)

    # -- joblib ----------------------------------------------------------------------------
    def _skip_joblib_array(self, wrapper: _Obj) -> None:
        attrs = wrapper.attrs
        dtype = _dtype_from_symbolic(attrs.get("dtype"))
        shape = attrs.get("shape")
        if dtype is None:
            raise _PickleError("joblib array with a dtype the scanner cannot reconstruct")
        if not isinstance(shape, tuple) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
            raise _PickleError("joblib array with an invalid shape")
        self.joblib_skipped = True
        if dtype.hasobject:
            inner = _PickleWalker(self.data, self.stream.tell(), joblib=False, depth=self.depth + 1)
            result = inner.run()
            for event in result.events:
                self.events.append(event)
            start = self.stream.tell()
            self.skipped.append((start, result.end))
            self.nested.append((start, result.end))
            if not result.completed:
                raise _PickleError(f"nested object-array pickle: {result.error}")
            self.stream.seek(result.end)
            return
        count = 1
        for s in shape:
            count *= s
        nbytes = count * dtype.itemsize
        pos = self.stream.tell()
        begin = pos
        alignment = attrs.get("numpy_array_alignment_bytes", _JOBLIB_ALIGNMENT_DEFAULT)
        if alignment is not None:
            if pos >= len(self.data):
                raise _PickleError("truncated joblib array padding")
            pos += 1 + self.data[pos]
        if pos + nbytes > len(self.data):
            raise _PickleError("truncated joblib array data")
        self.skipped.append((begin, pos + nbytes))
        self.stream.seek(pos + nbytes)

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> _WalkResult:
        try:
            self._run()
        except _PickleError as exc:
            return _WalkResult(self.events, False, str(exc), self.stream.tell(), self.joblib_skipped, tuple(self.skipped), tuple(self.nested))
        except (ValueError, EOFError, UnicodeDecodeError, struct.error, OverflowError, MemoryError, IndexError, KeyError, TypeError) as exc:
            return _WalkResult(self.events, False, _short(exc), self.stream.tell(), self.joblib_skipped, tuple(self.skipped), tuple(self.nested))
        return _WalkResult(self.events, True, "", self.stream.tell(), self.joblib_skipped, tuple(self.skipped), tuple(self.nested))

    def _run(self) -> None:  # noqa: C901 - one branch per opcode, like the unpickler
        stack_push = self._push
        for opcode, arg, pos in _genops(self.stream):
            name = opcode.name
            if name in _STRING_OPS:
                stack_push(arg if isinstance(arg, str) else _decode_str(arg))
            elif name in _SCALAR_OPS:
                stack_push(arg)
            elif name in _BYTES_OPS:
                stack_push(arg if len(arg) <= 256 else _OPAQUE)
            elif name == "PROTO":
                self.proto = arg
            elif name == "FRAME":
                pass
            elif name == "STOP":
                self._pop()
                return
            elif name == "MARK":
                self.metastack.append(self.stack)
                self.stack = []
            elif name == "POP":
                if self.stack:
                    self.stack.pop()
                else:
                    self._pop_mark()
            elif name == "POP_MARK":
                self._pop_mark()
            elif name == "DUP":
                stack_push(self._top())
            elif name == "NONE":
                stack_push(None)
            elif name == "NEWTRUE":
                stack_push(True)
            elif name == "NEWFALSE":
                stack_push(False)
            elif name == "NEXT_BUFFER":
                stack_push(_OPAQUE)
            elif name == "READONLY_BUFFER":
                self._top()
            elif name == "EMPTY_TUPLE":
                stack_push(())
            elif name == "TUPLE":
                stack_push(tuple(self._pop_mark()))
            elif name == "TUPLE1":
                a = self._pop()
                stack_push((a,))
            elif name == "TUPLE2":
                b = self._pop()
                a = self._pop()
                stack_push((a, b))
            elif name == "TUPLE3":
                c = self._pop()
                b = self._pop()
                a = self._pop()
                stack_push((a, b, c))
            elif name == "EMPTY_LIST":
                stack_push(_List())
            elif name == "LIST":
                stack_push(_List(self._pop_mark()))
            elif name == "EMPTY_DICT":
                stack_push(_Dict())
            elif name == "DICT":
                items = self._pop_mark()
                stack_push(_Dict(list(zip(items[::2], items[1::2]))))
            elif name == "EMPTY_SET":
                stack_push(_Set())
            elif name == "FROZENSET":
                stack_push(_Set(self._pop_mark()))
            elif name == "APPEND":
                value = self._pop()
                self._append(self._top(), [value], "APPEND")
            elif name == "APPENDS":
                items = self._pop_mark()
                self._append(self._top(), items, "APPENDS")
            elif name == "SETITEM":
                value = self._pop()
                key = self._pop()
                self._setitems(self._top(), [(key, value)])
            elif name == "SETITEMS":
                items = self._pop_mark()
                self._setitems(self._top(), list(zip(items[::2], items[1::2])))
            elif name == "ADDITEMS":
                items = self._pop_mark()
                target = self._top()
                if isinstance(target, _Set):
                    target.items.extend(items)
                else:
                    self._mutate(target, "ADDITEMS")
            elif name in ("GET", "BINGET", "LONG_BINGET"):
                if arg not in self.memo:
                    raise _PickleError("memo value not found")
                stack_push(self.memo[arg])
            elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
                if arg < 0:
                    raise _PickleError("negative PUT argument")
                self.memo[arg] = self._top()
            elif name == "MEMOIZE":
                self.memo[len(self.memo)] = self._top()
            elif name == "GLOBAL":
                module, gname = self._decode_pair(arg)
                stack_push(self._make_global(module, gname))
            elif name == "STACK_GLOBAL":
                gname = self._pop()
                module = self._pop()
                if isinstance(module, str) and isinstance(gname, str):
                    stack_push(self._make_global(module, gname))
                elif not all(_maybe_str(v) for v in (module, gname)):
                    raise _PickleError("STACK_GLOBAL requires str")  # the unpickler stops here too
                else:
                    self._event("unresolvable-import", "STACK_GLOBAL with a module or name that is not a plain string")
                    stack_push(_Global("?", "?", False))
            elif name == "INST":
                module, gname = self._decode_pair(arg)
                args = tuple(self._pop_mark())
                glob = self._make_global(module, gname)
                stack_push(self._call(glob, args, "INST"))
            elif name == "OBJ":
                items = self._pop_mark()
                if not items:
                    raise _PickleError("OBJ without a class")
                cls = items[0]
                stack_push(self._call(cls, tuple(items[1:]), "OBJ"))
            elif name == "NEWOBJ":
                args = self._pop()
                cls = self._pop()
                stack_push(self._call(cls, args, "NEWOBJ", init=False))
            elif name == "NEWOBJ_EX":
                kwargs = self._pop()
                args = self._pop()
                cls = self._pop()
                obj = self._call(cls, args, "NEWOBJ_EX", init=False)
                obj.state = kwargs
                stack_push(obj)
            elif name == "REDUCE":
                args = self._pop()
                func = self._pop()
                stack_push(self._call(func, args, "REDUCE"))
            elif name == "BUILD":
                state = self._pop()
                inst = self._top()
                self._build(inst, state)
            elif name in ("PERSID", "BINPERSID"):
                if name == "BINPERSID":
                    self._pop()
                self._event("persistent-load", name)
                stack_push(_ANY)
            elif name in ("EXT1", "EXT2", "EXT4"):
                self._event("extension-registry", f"{name} code {arg}")
                stack_push(_Global("?", "?", False))
            else:
                raise _PickleError(f"unsupported opcode {name}")
        raise _PickleError("pickle ended before STOP")  # pragma: no cover - genops raises first

    def _push(self, value: Any) -> None:
        self.stack.append(value)

    def _append(self, target: Any, items: list[Any], what: str) -> None:
        if isinstance(target, _List):
            target.extend(items)
        else:
            self._mutate(target, what)

    def _setitems(self, target: Any, pairs: list[tuple[Any, Any]]) -> None:
        if isinstance(target, _Dict):
            target.pairs.extend(pairs)
        else:
            self._mutate(target, "SETITEM")

    def _build(self, inst: Any, state: Any) -> None:
        if isinstance(inst, _Global):
            self._mutate(inst, "BUILD")
            return
        if not isinstance(inst, _Obj):
            return
        inst.state = state
        dict_state, slot_state = state, None
        if isinstance(state, tuple) and len(state) == 2:
            dict_state, slot_state = state
        understood = True
        for part in (dict_state, slot_state):
            if isinstance(part, _Dict):
                as_dict = part.as_str_dict()
                if as_dict is None:
                    understood = False
                else:
                    inst.attrs.update(as_dict)
            elif part is not None:
                understood = False
        if self.joblib and isinstance(inst.cls, _Global) and (inst.cls.module, inst.cls.name) == _NAW:
            if not understood:
                raise _PickleError("joblib array wrapper with a state the scanner cannot interpret")
            self._skip_joblib_array(inst)
            # joblib replaces the wrapper on the stack by the array it read
            self.stack[-1] = _OPAQUE


def _parse_int_line(line: bytes) -> int:
    """Parse the text argument of INT/LONG the way the C unpickler does (``strtol``/``int(s, 0)``)."""
    text = line.decode("ascii").strip()
    try:
        return int(text, 0)
    except ValueError:
        pass
    # strtol(base=0) also accepts C octal ("010" == 8), which int(s, 0) rejects
    match = re.fullmatch(r"([+-]?)0([0-7]+)", text)
    if match:
        value = int(match.group(2), 8)
        return -value if match.group(1) == "-" else value
    raise ValueError(f"invalid integer literal {text[:20]!r}")


def _read_line(stream: io.BytesIO) -> bytes:
    line = stream.readline()
    if not line.endswith(b"\n"):
        raise _PickleError("pickle ended in the middle of a text argument")
    return line[:-1]


def _genops(stream: io.BytesIO) -> Iterator[tuple[Any, Any, int]]:
    """Like ``pickletools.genops`` but decodes text arguments exactly as the real unpickler does.

    ``genops`` parses INT/LONG with ``int(s)`` where the unpickler accepts ``int(s, 0)`` (hex,
    octal, underscores); a scanner that stops where the unpickler goes on can be bypassed.
    GLOBAL/INST/PERSID lines are returned raw and re-decoded by the caller.
    """
    code2op = pickletools.code2op
    while True:
        pos = stream.tell()
        code = stream.read(1)
        if not code:
            raise _PickleError("pickle ended before STOP")
        opcode = code2op.get(code.decode("latin-1"))
        if opcode is None:
            raise _PickleError(f"unknown opcode {code!r} at offset {pos}")
        name = opcode.name
        if opcode.arg is None:
            arg = None
        elif name == "INT":
            line = _read_line(stream)
            arg = {b"00": False, b"01": True}.get(line)
            if arg is None:
                arg = _parse_int_line(line)
        elif name == "LONG":
            line = _read_line(stream)
            arg = _parse_int_line(line[:-1] if line.endswith(b"L") else line)
        elif name in ("GLOBAL", "INST"):
            arg = (_read_line(stream), _read_line(stream))
        elif name == "PERSID":
            arg = _read_line(stream)
        else:
            arg = opcode.arg.reader(stream)
        yield opcode, arg, pos
        if name == "STOP":
            return


def _maybe_str(value: Any) -> bool:
    """Whether a symbolic value could be a str at load time (results of calls, persistent objects)."""
    return isinstance(value, (str, _Obj, _Global)) or value is _ANY


def _plausible_import(module: str, name: str) -> bool:
    return bool(_IDENTIFIER_PATH.match(module) and _IDENTIFIER_PATH.match(name))


def _decode_str(arg: Any) -> Any:
    if isinstance(arg, bytes):
        try:
            return arg.decode("ascii")
        except UnicodeDecodeError:
            return _OPAQUE
    return arg


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:160]


def _to_plain(value: Any, depth: int = 0) -> Any:
    """Convert a symbolic value made of primitives and dtypes to a real Python value (or raise)."""
    if depth > 20:
        raise ValueError("too deep")
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, tuple):
        return tuple(_to_plain(v, depth + 1) for v in value)
    if isinstance(value, _List):
        return [_to_plain(v, depth + 1) for v in value]
    if isinstance(value, _Dict):
        return {_to_plain(k, depth + 1): _to_plain(v, depth + 1) for k, v in value.pairs}
    if isinstance(value, _Obj):
        dtype = _dtype_from_symbolic(value, depth + 1)
        if dtype is not None:
            return dtype
    raise ValueError("not a plain value")


def _dtype_from_symbolic(value: Any, depth: int = 0) -> Any:
    """Rebuild a ``numpy.dtype`` from its pickled form (``numpy.dtype(str, align, copy)`` + state)."""
    import numpy as np

    if not isinstance(value, _Obj) or not isinstance(value.func, _Global):
        return None
    if (value.func.module, value.func.name) != ("numpy", "dtype"):
        return None
    args = value.args
    if not isinstance(args, tuple) or not args or not isinstance(args[0], str):
        return None
    try:
        plain_args = tuple(_to_plain(a, depth + 1) for a in args[:2])
        if not all(isinstance(a, (str, bool, int)) for a in plain_args):
            return None
        # always a fresh copy: setting state on a cached builtin descriptor would corrupt it
        dtype = np.dtype(plain_args[0], bool(plain_args[1]) if len(plain_args) > 1 else False, True)
        if value.state is not None:
            dtype.__setstate__(_to_plain(value.state, depth + 1))
        return dtype
    except Exception:  # noqa: BLE001 - any failure means "cannot reconstruct"; caller fails closed
        return None


# --------------------------------------------------------------------------------------------
# Content scanning
# --------------------------------------------------------------------------------------------


def _report_events(ctx: _Ctx, path: str, events: list[_Event], *, only_called: bool = False, only_imports: bool = False) -> None:
    """Report walk events; the filters are for interpretations of bytes that may not be a pickle."""
    for event in events:
        if only_called and not event.called:
            continue
        if only_imports and not (event.kind == "unsafe-import" and event.plausible):
            continue
        _report(ctx, path, event.kind, event.detail)


def _scan_pickle(data: bytes, start: int, path: str, ctx: _Ctx, *, strict: bool, joblib: bool) -> _WalkResult:
    """Walk the pickle at ``data[start:]`` and report what it would import or call.

    ``strict``: the content is known to be a pickle, so a parse failure is "unparseable".
    Otherwise the content only *might* be a (protocol 0/1) pickle: it is treated as one if it
    parses to STOP; if it does not, only imports that would actually be called before the
    unpickler gives up are reported.
    """
    result = _PickleWalker(data, start, joblib=joblib).run()
    if result.completed or strict:
        _report_events(ctx, path, result.events)
        if not result.completed:
            _report(ctx, path, "unparseable", f"pickle: {result.error}")
        _second_opinion(data, start, result, path, ctx)
    else:
        _report_events(ctx, path, result.events, only_called=True, only_imports=True)
    if result.joblib_skipped:
        # A plain pickle.load of the same bytes would execute the array bytes as opcodes:
        # whatever that interpretation reaches before it breaks must be safe too.
        plain = _PickleWalker(data, start, joblib=False).run()
        _report_events(ctx, path, plain.events, only_imports=True)
    return result


# --------------------------------------------------------------------------------------------
# Second opinion: picklescan
# --------------------------------------------------------------------------------------------

SECOND_OPINION = "picklescan"


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


def _picklescan_dangerous(stream: bytes, path: str) -> list[str]:
    """Globals that picklescan classes as dangerous in one pickle stream (never loaded)."""
    import logging

    from picklescan.scanner import SafetyLevel, scan_pickle_bytes

    logging.getLogger("picklescan").setLevel(logging.CRITICAL)
    result = scan_pickle_bytes(io.BytesIO(stream), path, multiple_pickles=False)
    return sorted({f"{g.module}.{g.name}" for g in result.globals if g.safety == SafetyLevel.Dangerous})


def _second_opinion(data: bytes, start: int, result: _WalkResult, path: str, ctx: _Ctx) -> None:
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
            _report(ctx, path, "second-opinion", f"{SECOND_OPINION}: {dotted}")


def _is_pickle_start(data: bytes) -> bool:
    return len(data) > 1 and data[0] == 0x80 and data[1] <= 5


def _scan_pickle_stream(data: bytes, path: str, ctx: _Ctx, depth: int, *, strict: bool) -> str | None:
    """Scan a pickle and whatever follows its STOP (more pickles, or other content).

    Returns the format name, or None when ``strict`` is false and the data is not a pickle.
    """
    pos = 0
    fmt = "pickle"
    while True:
        result = _scan_pickle(data, pos, path, ctx, strict=strict, joblib=True)
        if result.joblib_skipped:
            fmt = "joblib"
        if not result.completed:
            if pos == 0 and not strict:
                return None
            if pos > 0 and not strict:
                # trailing bytes that are not a pickle: scan them as content of their own
                if depth + 1 <= MAX_NESTING:
                    _scan_blob(data[pos:], path, ctx, depth + 1)
            return fmt
        if result.end <= pos:
            return fmt
        pos = result.end
        if not data[pos:].strip(b"\x00 \t\r\n"):
            return fmt
        strict = _is_pickle_start(data[pos : pos + 2])


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


_ZFILE_HEADER = 2 + len(hex(2**64))  # joblib < 0.10: b"ZF" + hex length padded to 19 chars


def _compression_kind(data: bytes) -> str | None:
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


def _decompress(kind: str, data: bytes, limit: int) -> tuple[bytes, str]:
    """Decompress ``data``; returns (output, error). Output may be partial when error is set."""
    out = bytearray()

    def take(chunk: bytes) -> bool:
        out.extend(chunk)
        return len(out) <= limit

    try:
        if kind == "zlib" or kind == "joblib-zfile":
            payload = data
            if kind == "joblib-zfile":
                payload = data[_ZFILE_HEADER:]
                if payload[:1] == b" ":
                    payload = payload[1:]
            d = zlib.decompressobj()
            if not take(d.decompress(payload, limit + 1)):
                return bytes(out), "too-large"
            if not d.eof:
                return bytes(out), "truncated zlib stream"
            return bytes(out), ""
        if kind == "gzip":
            rest = data
            while rest:
                d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                if not take(d.decompress(rest, limit + 1 - len(out))):
                    return bytes(out), "too-large"
                if not d.eof:
                    return bytes(out), "truncated gzip stream"
                rest = d.unused_data
                if rest and rest[:2] != b"\x1f\x8b":
                    if rest.strip(b"\x00"):
                        return bytes(out), "trailing data after gzip stream"
                    break
            return bytes(out), ""
        if kind in ("bz2", "xz", "lzma"):
            magic = {"bz2": b"BZh", "xz": b"\xfd7zXZ\x00", "lzma": None}[kind]
            rest = data
            while rest:
                if kind == "bz2":
                    d: Any = bz2.BZ2Decompressor()
                elif kind == "xz":
                    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
                else:
                    d = lzma.LZMADecompressor(format=lzma.FORMAT_ALONE)
                if not take(d.decompress(rest, limit + 1 - len(out))):
                    return bytes(out), "too-large"
                if not d.eof:
                    return bytes(out), f"truncated {kind} stream"
                rest = d.unused_data
                if rest and (magic is None or not rest.startswith(magic)):
                    if rest.strip(b"\x00"):
                        return bytes(out), f"trailing data after {kind} stream"
                    break
            return bytes(out), ""
        if kind == "lz4":
            try:
                import lz4.frame  # type: ignore[import-not-found]
            except ImportError:
                return b"", "lz4 is not installed"
            d = lz4.frame.LZ4FrameDecompressor()
            if not take(d.decompress(data, max_length=limit + 1)):
                return bytes(out), "too-large"
            if not d.eof:
                return bytes(out), "truncated lz4 stream"
            return bytes(out), ""
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError, RuntimeError) as exc:
        return bytes(out), _short(exc)
    return b"", f"unknown compression {kind}"


def _looks_like_text(data: bytes) -> bool:
    try:
        data[:1_000_000].decode("utf-8")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut at the 1 MB boundary is still text
        return exc.start > 1_000_000 - 4
    return True


def _scan_npy(data: bytes, path: str, ctx: _Ctx, depth: int) -> str:
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
        _report(ctx, path, "unparseable", f"npy header: {_short(exc)}")
        return "npy"
    if dtype.hasobject:
        _scan_pickle(data, stream.tell(), path, ctx, strict=True, joblib=False)
        return "npy-object"
    return "npy"


def _scan_zip(data: bytes, path: str, ctx: _Ctx, depth: int, *, secondary: bool = False) -> str:
    """Scan every member of a zip archive by content."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as exc:
        if not secondary:
            _report(ctx, path, "unparseable", f"zip: {_short(exc)}")
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
        total = sum(info.file_size for info in infos)
        if total > ctx.budget:
            _report(ctx, path, "too-large", f"{total} bytes uncompressed")
            return fmt
        for info in infos:
            member_path = f"{path}!{info.filename}"
            if info.is_dir():
                continue
            if info.flag_bits & 0x1:
                _report(ctx, member_path, "uninspectable", "encrypted zip member")
                continue
            if info.file_size > _RATIO_MIN_SIZE and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
                # declared sizes are checked again while reading: a member may not grow past them
                _report(ctx, member_path, "too-large", "compression ratio suggests a zip bomb")
                continue
            try:
                with archive.open(info) as member:
                    content = member.read(info.file_size + 1)
                    if len(content) > info.file_size or member.read(1):
                        raise zipfile.BadZipFile("member longer than declared")
            except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error, lzma.LZMAError, RuntimeError) as exc:
                _report(ctx, member_path, "unparseable", f"zip member: {_short(exc)}")
                continue
            if not ctx.spend(len(content)):
                _report(ctx, member_path, "too-large", "inspection budget exhausted")
                return fmt
            _scan_blob(content, member_path, ctx, depth + 1)
        if fmt == "skops":
            _scan_skops_types(data, path, ctx)
    return fmt


def _scan_skops_types(data: bytes, path: str, ctx: _Ctx) -> None:
    try:
        from skops.io import get_untrusted_types
    except ImportError:  # pragma: no cover - skops is a dependency
        _report(ctx, path, "uninspectable", "skops is not installed")
        return
    try:
        untrusted = get_untrusted_types(data=data)
    except Exception as exc:  # noqa: BLE001 - malformed schema of any kind fails closed
        _report(ctx, path, "unparseable", f"skops schema: {_short(exc)}")
        return
    for type_name in untrusted:
        module, _, name = str(type_name).rpartition(".")
        if not is_allowed_global(module, name):
            _report(ctx, path, "untrusted-type", str(type_name))


def _scan_blob(data: bytes, path: str, ctx: _Ctx, depth: int) -> str:
    """Scan one byte string by content; returns the detected format name."""
    if depth > MAX_NESTING:
        _report(ctx, path, "too-large", f"nested more than {MAX_NESTING} containers deep")
        return "nested"
    if not data:
        return "empty"
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"):
        return _scan_zip(data, path, ctx, depth)
    if data[:6] == b"\x93NUMPY":
        return _scan_npy(data, path, ctx, depth)
    fmt = _scan_pickle_family(data, path, ctx, depth)
    if fmt in ("text", "data") and zipfile.is_zipfile(io.BytesIO(data)):
        # a zip with something prepended (zipfile still opens it)
        return _scan_zip(data, path, ctx, depth, secondary=True)
    return fmt


def _scan_pickle_family(data: bytes, path: str, ctx: _Ctx, depth: int) -> str:
    if _is_safetensors(data):
        # cannot carry code; but refuse a pickle/safetensors polyglot
        _scan_pickle(data, 0, path, ctx, strict=False, joblib=True)
        return "safetensors"
    if _is_pickle_start(data):
        return _scan_pickle_stream(data, path, ctx, depth, strict=True) or "pickle"
    kind = _compression_kind(data)
    if kind is not None:
        inner, error = _decompress(kind, data, max(ctx.budget, 0))
        text_fallback = kind in ("zlib", "bz2", "joblib-zfile", "lzma") and not inner and _looks_like_text(data)
        if error and text_fallback:
            pass  # e.g. a text file that happens to start with "x^": not compressed at all
        else:
            if error == "too-large":
                _report(ctx, path, "too-large", f"{kind} stream decompresses beyond the inspection budget")
            elif error == "lz4 is not installed":
                _report(ctx, path, "uninspectable", "lz4-compressed and the lz4 package is not installed")
            elif error:
                _report(ctx, path, "unparseable", f"{kind}: {error}")
            if inner:
                ctx.spend(len(inner))
                if depth + 1 > MAX_NESTING:
                    _report(ctx, path, "too-large", f"nested more than {MAX_NESTING} containers deep")
                else:
                    inner_fmt = _scan_blob(inner, path, ctx, depth + 1)
                    return f"{kind}+{inner_fmt}"
            return kind
    # maybe a protocol 0/1 pickle (these start with ordinary characters)
    issues_before = len(ctx.issues)
    fmt = _scan_pickle_stream(data, path, ctx, depth, strict=False)
    if fmt is not None:
        return fmt
    if len(ctx.issues) > issues_before:
        return "pickle"  # not a complete pickle, but the unpickler would run something before failing
    if _looks_like_text(data):
        return "json" if data.lstrip()[:1] in (b"{", b"[") and _is_json(data) else "text"
    return "data"


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
    ctx = _Ctx()
    fmt = _scan_blob(data, name, ctx, 0)
    status = "unsafe" if ctx.issues else "clean"
    return ScanReport(root=name, files_scanned=1, issues=tuple(ctx.issues), files=(ScanFile(name, fmt, status),), second_opinions=ctx.second_opinions)


# --------------------------------------------------------------------------------------------
# Files and directories
# --------------------------------------------------------------------------------------------


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


def _scan_file(file_path: Path, rel: str, ctx: _Ctx) -> str:
    try:
        st = file_path.lstat()
    except OSError as exc:
        _report(ctx, rel, "unreadable", exc.strerror or type(exc).__name__)
        return "unreadable"
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(file_path)
        except OSError:
            target = "?"
        _report(ctx, rel, "symlink", f"-> {target}")
        return "symlink"
    if not stat.S_ISREG(st.st_mode):
        _report(ctx, rel, "special-file", stat.filemode(st.st_mode))
        return "special"
    if st.st_size > MAX_INSPECT_BYTES:
        _report(ctx, rel, "too-large", f"{st.st_size} bytes")
        return "too-large"
    try:
        data = file_path.read_bytes()
    except OSError as exc:
        _report(ctx, rel, "unreadable", exc.strerror or type(exc).__name__)
        return "unreadable"
    return _scan_blob(data, rel, ctx, 0)


def scan_path(path: Path) -> ScanReport:
    """Scan a file or a directory tree for unsafe serialized content. Nothing is ever loaded.

    Raises :class:`~secure_pipeline.errors.BadInputError` if ``path`` does not exist.  Inside a
    directory, ``.git`` is skipped and symbolic links are reported (kind ``symlink``), not followed.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise BadInputError(f"model path {path} does not exist; pass the model file or directory to scan")
    issues: list[ScanIssue] = []
    files: list[ScanFile] = []
    second = 0
    if path.is_dir():
        entries = [(p, rel) for p, rel in _iter_dir(path)]
        for entry_path, marker in entries:
            rel = entry_path.relative_to(path).as_posix()
            ctx = _Ctx()
            if marker == "!unreadable-dir":
                _report(ctx, rel, "unreadable", "directory cannot be listed")
                fmt = "directory"
            else:
                fmt = _scan_file(entry_path, rel, ctx)
            issues.extend(ctx.issues)
            second += ctx.second_opinions
            files.append(ScanFile(rel, fmt, "unsafe" if ctx.issues else "clean"))
    else:
        resolved = path.resolve() if path.is_symlink() else path
        if not resolved.exists():
            raise BadInputError(f"model path {path} is a dangling symbolic link; pass the real file")
        rel = path.name
        ctx = _Ctx()
        try:
            with open(resolved, "rb"):
                pass
        except OSError as exc:
            raise BadInputError(f"cannot read {path}: {exc.strerror}; check the path and its permissions") from exc
        fmt = _scan_file(resolved, rel, ctx)
        issues.extend(ctx.issues)
        second += ctx.second_opinions
        files.append(ScanFile(rel, fmt, "unsafe" if ctx.issues else "clean"))
    return ScanReport(root=str(path), files_scanned=len(files), issues=tuple(issues), files=tuple(files), second_opinions=second)

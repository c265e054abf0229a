"""Which imports a pickle may make: the allowlist rule described in the package docstring."""

from __future__ import annotations

import _compat_pickle
import re

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
        "numpy.rec.recarray",
        "numpy.rec.record",
        "numpy.core.records.recarray",
        "numpy.core.records.record",
        "numpy._core.records.recarray",
        "numpy._core.records.record",
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

_CLASS_NAME = re.compile(r"^_*[A-Z][A-Za-z0-9_]*\Z")
_HELPER_NAME = re.compile(
    r"^(__pyx_unpickle_\w+|_new_[A-Za-z]\w*|_unpickle_\w+|\w+_unpickle|_reconstruct|_mareconstruct"
    r"|_frombuffer|scalar|newObj|__\w+_ctor)\Z"
)
_SPARSE_NAME = re.compile(r"^(bsr|coo|csc|csr|dia|dok|lil)_(matrix|array)\Z")
IDENTIFIER_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


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


#: NumPy statistics that fitted estimators keep as plain values (``FeatureAgglomeration.pooling_func``)
_NUMPY_STATISTICS = frozenset(
    {
        "mean", "median", "average", "sum", "prod", "min", "max", "amin", "amax", "std", "var", "ptp",
        "percentile", "quantile", "nanmean", "nanmedian", "nansum", "nanprod", "nanmin", "nanmax", "nanstd",
        "nanvar", "nanpercentile", "nanquantile", "count_nonzero", "argmin", "argmax", "cumsum", "cumprod",
    }
)  # fmt: skip
_FUNCTION_NAME = re.compile(r"^_?[a-z][a-z0-9_]*\Z")
#: scikit-learn functions that write or read files (``export_graphviz(out_file=...)``) are not values
_IO_FUNCTION_NAME = re.compile(r"^_?(export|dump|load|save|fetch|read|write|open)")

#: Imports that are known to run code, touch files or processes when called (for the wording of a finding).
_DANGEROUS_MODULES = frozenset(
    {
        "os", "posix", "nt", "subprocess", "sys", "socket", "shutil", "runpy", "pty", "ctypes", "importlib",
        "code", "codeop", "pickle", "_pickle", "marshal", "webbrowser", "multiprocessing", "asyncio", "cProfile",
        "profile", "pdb", "bdb", "timeit", "commands", "pip", "ensurepip", "tempfile", "urllib", "requests",
        "http", "ftplib", "smtplib", "telnetlib", "numpy.f2py", "numpy.testing", "numpy.ctypeslib", "pandas.io",
        "joblib", "dill", "cloudpickle", "torch",
    }
)  # fmt: skip
_DANGEROUS_NAMES = frozenset(
    {
        "builtins.eval", "builtins.exec", "builtins.execfile", "builtins.compile", "builtins.getattr",
        "builtins.setattr", "builtins.delattr", "builtins.__import__", "builtins.open", "builtins.input",
        "builtins.breakpoint", "builtins.globals", "builtins.locals", "builtins.vars", "builtins.apply",
        "builtins.exit", "builtins.quit", "operator.attrgetter", "operator.itemgetter", "operator.methodcaller",
        "_operator.attrgetter", "_operator.itemgetter", "_operator.methodcaller", "types.CodeType",
        "types.FunctionType", "numpy.load", "numpy.fromfile", "numpy.loadtxt", "numpy.genfromtxt", "numpy.save",
        "numpy.savez", "numpy.savetxt", "numpy.memmap", "pandas.read_pickle", "pandas.eval",
    }
)  # fmt: skip


def is_known_dangerous(dotted: str) -> bool:
    """Whether an import is known to run code (or touch files/processes) when it is called."""
    parts = dotted.split(".")
    prefixes = {".".join(parts[:i]) for i in range(1, len(parts))}
    return dotted in _DANGEROUS_NAMES or bool(prefixes & _DANGEROUS_MODULES)


def is_allowed_global(module: str, name: str) -> bool:
    """Whether a pickle (or a ``.skops`` file) may import ``module.name``: a global it may also call
    (:func:`may_call_global`), or a pure computation kept as a value, not called at load time.

    The values are scikit-learn functions outside the denied modules that do no I/O by name
    (score functions such as ``f_classif``, the k-means kernels; not ``export_graphviz``), NumPy ufuncs and statistics (``numpy.mean`` as a pooling
    function), array-API namespace functions, and ``functools.partial``, which the pickle walk
    accepts only around an allowed function.
    """
    if may_call_global(module, name):
        return True
    if not isinstance(module, str) or not isinstance(name, str) or not IDENTIFIER_PATH.match(module) or not _FUNCTION_NAME.match(name):
        return False
    parts = module.split(".")
    if module == "functools" and name == "partial":
        return True
    if module == "numpy":
        return name in _NUMPY_STATISTICS
    if parts[0] in ("sklearn", "scipy") and "array_api_compat" in parts:
        return True
    return parts[0] == "sklearn" and not _IO_FUNCTION_NAME.match(name) and not any(part in _DENIED_MODULE_PARTS for part in parts[1:])


def may_call_global(module: str, name: str) -> bool:
    """Whether a pickle may call (construct) ``module.name`` at load time (see the package docstring)."""
    if not isinstance(module, str) or not isinstance(name, str):
        return False
    if not IDENTIFIER_PATH.match(module) or not IDENTIFIER_PATH.match(name) or "." in name:
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


#: modules that are ``os`` under another name (``pickle.dumps(os.system)`` writes ``posix.system``)
_OS_ALIASES = frozenset({"posix", "nt"})


def canonical_import(module: str, name: str, proto: int) -> tuple[str, str]:
    """The import the unpickler makes: the Python 2 -> 3 renames it applies for protocols < 3;
    ``posix``/``nt`` are spelled ``os`` (the same functions)."""
    if proto < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
    return ("os" if module in _OS_ALIASES else module), name


def plausible_import(module: str, name: str) -> bool:
    """Whether an import could succeed at all (module and name are dotted Python identifiers)."""
    return all(part.isidentifier() for part in f"{module}.{name}".split("."))

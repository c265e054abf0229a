"""Model scanner: find serialized content that would run code or import untrusted types when loaded.

The scanner never loads what it scans.  Pickle streams are *walked* opcode by opcode with
a decoder built on ``pickletools`` opcode tables (pure parsing; text arguments are decoded the
way the C unpickler decodes them) through a small symbolic stack machine that mirrors the
unpickler closely enough to know which object every ``GLOBAL``/``STACK_GLOBAL``/``INST``/``OBJ``/
``REDUCE``/``NEWOBJ``/``BUILD`` acts on, without ever importing or calling anything.

Formats are recognised by content, never by file name:

* pickle (``\\x80`` + protocol byte; a protocol 0/1 stream is recognised when it parses to STOP,
  or when it parses to the end of the data, imports something and is cut off there: a truncated
  pickle, unsafe; text breaks off long before its end and stays text),
* joblib (a pickle whose ``NumpyArrayWrapper`` objects are followed by raw array bytes, which are
  skipped exactly as joblib reads them; object arrays in there are nested pickles and are walked),
  plain or compressed with zlib, gzip, bz2, xz or lzma (lz4 cannot be inspected -> unsafe),
* NumPy ``.npy`` (header parsed with ``numpy.lib.format``; an object dtype means the payload is a
  pickle, which is walked),
* zip archives (``.npz``, ``.skops``, PyTorch-style checkpoints, anything else): every member is
  read in full, so a bad CRC-32 is detected, and scanned by content, recursively,
* 7z archives (py7zr, in memory) and tar archives (the legacy PyTorch checkpoint layout, v7 tars
  without magic) the same way; an encrypted 7z or a method py7zr cannot decode is unsafe,
* ``.skops`` (a zip with ``schema.json``): ``skops.io.get_untrusted_types`` (reads the schema only)
  and every reported type must pass the allowlist below,
* safetensors, JSON, text and other data that no loader turns into code: clean.

Fail closed: a file that looks like a pickle, archive or compressed stream but cannot be parsed
completely is unsafe ("unparseable"), and so is anything too large or too deeply nested to inspect
(a zip end record whose central directory cannot be read included). A protocol 0/1 stream that
breaks off is reported for what the unpickler does before it stops: imports it calls, ``__main__``
modules it imports (they run as they are imported) and imported objects it changes (``SETITEM`` on
``os.environ``).
Pickle framing counts as parsing: an opcode or argument that crosses a FRAME end, a FRAME opened
inside another, a frame running past STOP are "malformed pickle framing", because ``pickle.load``
from a file reads such a stream differently from a linear reader (python/cpython#154848).

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
   container class (``csr_matrix``, ``coo_array``, ...);
3. it is only kept as a value, never called at load time, and is a pure computation: a
   scikit-learn function outside the denied modules (``f_classif`` as a score function, the
   k-means kernels), a NumPy statistic (``numpy.mean`` as a pooling function), an array-API
   namespace function, or ``functools.partial`` around an allowed function (checked where the
   partial is created and where ``BUILD`` could swap its function).

Rules 1-2 say what a pickle may call (``may_call_global``); rule 3 widens what it may import.
A finding names what it is: "can run code when loaded" for imports known to do so (``os``,
``subprocess``, ``builtins.eval``, ...), "not on the allowlist" for the rest (``builtins.len``).

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

Layout: ``content`` sniffs formats and dispatches, ``pickle_vm`` walks pickle streams,
``containers`` opens archives and compressed streams, ``allowlist`` decides imports,
``second_opinion`` asks picklescan, ``report`` holds the result types, ``paths`` walks the disk,
``limits`` holds the size and nesting limits.
"""

from __future__ import annotations

from secure_pipeline.scanning.allowlist import is_allowed_global
from secure_pipeline.scanning.content import scan_bytes
from secure_pipeline.scanning.paths import scan_path
from secure_pipeline.scanning.report import SCHEMA, SECOND_OPINION, ScanFile, ScanIssue, ScanReport, scanner_versions

__all__ = [
    "SCHEMA",
    "SECOND_OPINION",
    "ScanIssue",
    "ScanFile",
    "ScanReport",
    "scan_path",
    "scan_bytes",
    "scanner_versions",
    "is_allowed_global",
]

"""A symbolic pickle machine: walks a stream opcode by opcode and records what it would import or call.

Nothing is imported or called: every value is a symbol (``_Global``, ``_Obj``, ...), so the walk
knows which object every GLOBAL/STACK_GLOBAL/INST/OBJ/REDUCE/NEWOBJ/BUILD acts on.
"""

from __future__ import annotations

import io
import pickletools
import re
import struct
from dataclasses import dataclass
from typing import Any, Iterator

from secure_pipeline.scanning.allowlist import canonical_import, is_allowed_global, may_call_global, plausible_import
from secure_pipeline.scanning.report import short_error



class _Global:
    """An imported object, by name only: whether the allowlist admits it, and whether as something
    the pickle may call at load time or only as a value."""

    __slots__ = ("module", "name", "allowed", "callable")

    def __init__(self, module: str, name: str, allowed: bool, callable_: bool = False) -> None:
        self.module = module
        self.name = name
        self.allowed = allowed
        self.callable = callable_

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


class _Truncated(_PickleError):
    """The data ended inside the pickle: no STOP, or an argument that runs past the end."""


# what pickletools' argument readers say when the data ends before the argument does
_TRUNCATION_MESSAGES = ("not enough data", "but only", "no newline found")


@dataclass
class Event:
    kind: str
    detail: str
    called: bool = False
    plausible: bool = True  # an import that could actually succeed (module and name are identifiers)


@dataclass
class WalkResult:
    events: list[Event]
    completed: bool
    error: str
    end: int
    joblib_skipped: bool
    skipped: tuple[tuple[int, int], ...] = ()
    nested: tuple[tuple[int, int], ...] = ()
    truncated: bool = False  # the failure is that the data ended inside the pickle
    imports: int = 0  # GLOBAL/INST/STACK_GLOBAL opcodes parsed whose module and name could be imported


_NAW = ("joblib.numpy_pickle", "NumpyArrayWrapper")
_JOBLIB_ALIGNMENT_DEFAULT = None  # attribute missing -> joblib <= 1.1: no padding byte
_STRING_OPS = frozenset(
    {"STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8"}
)
_BYTES_OPS = frozenset({"BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8"})
_SCALAR_OPS = frozenset({"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT"})


class PickleWalker:
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
        self.events: list[Event] = []
        self.joblib_skipped = False
        self.skipped: list[tuple[int, int]] = []  # joblib array bytes (raw data or nested pickles)
        self.nested: list[tuple[int, int]] = []  # nested object-array pickles among them
        self.imports = 0

    # -- helpers -------------------------------------------------------------------------
    def _event(self, kind: str, detail: str, called: bool = False, plausible: bool = True) -> None:
        self.events.append(Event(kind, detail, called, plausible))

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
        module, name = canonical_import(module, name, self.proto)
        allowed = is_allowed_global(module, name)
        glob = _Global(module, name, allowed, may_call_global(module, name))
        plausible = plausible_import(module, name)
        self.imports += plausible
        if not allowed:
            self._event("unsafe-import", glob.dotted, plausible=plausible)
        return glob

    def _call(self, func: Any, args: Any, how: str, init: bool = True) -> _Obj:
        """Record a call of ``func``; only direct calls of allowed globals are acceptable."""
        if isinstance(func, _Global):
            if func.module == "?":
                self._event("unresolvable-import", f"{how} of a global that cannot be resolved", called=True)
            elif not func.allowed:
                self._event("unsafe-import", func.dotted, called=True, plausible=plausible_import(func.module, func.name))
            elif func.dotted == "functools.partial":
                self._check_partial(args[0] if isinstance(args, tuple) and args else None)
            elif not func.callable:
                self._event("unsafe-call", f"{how} calls {func.dotted}, which the allowlist admits only as a value", called=True)
            cls: Any = func
            if func.module == "copyreg" and func.name == "_reconstructor" and isinstance(args, tuple) and args:
                cls = args[0]
                if isinstance(cls, _Global) and not cls.allowed:
                    self._event("unsafe-import", cls.dotted, called=True, plausible=plausible_import(cls.module, cls.name))
                elif not isinstance(cls, _Global) or not cls.callable:
                    self._event("unsafe-call", "reconstructs an object whose class is not an allowed imported class")
            obj = _Obj(cls, func, args)
            if (func.module, func.name) == _NAW and init and isinstance(args, tuple):
                # NumpyArrayWrapper.__init__ runs: its defaults apply (16-byte alignment padding)
                obj.attrs.update({"allow_mmap": False, "numpy_array_alignment_bytes": 16})
                for key, value in zip(("subclass", "shape", "order", "dtype", "allow_mmap", "numpy_array_alignment_bytes"), args):
                    obj.attrs[key] = value
            return obj
        self._event("unsafe-call", f"{how} calls an object that is not an imported global", called=True)
        return _Obj(None, func, args)

    def _check_partial(self, wrapped: Any) -> None:
        """``functools.partial`` (created, or given a new function by BUILD) must wrap an allowed global."""
        if not isinstance(wrapped, _Global) or wrapped.module == "?":
            self._event("unsafe-call", "functools.partial wraps an object that is not an imported global", called=True)
        # an import the allowlist refuses was reported where it was imported

    def _mutate(self, target: Any, what: str) -> None:
        if isinstance(target, _Global):
            self._event("unsafe-mutation", f"{target.dotted} ({what})", called=True, plausible=plausible_import(target.module, target.name))

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
            inner = PickleWalker(self.data, self.stream.tell(), joblib=False, depth=self.depth + 1)
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
            raise _Truncated("truncated joblib array data")
        self.skipped.append((begin, pos + nbytes))
        self.stream.seek(pos + nbytes)

    # -- main loop -------------------------------------------------------------------------
    def run(self) -> WalkResult:
        completed, error, truncated = True, "", False
        try:
            self._run()
        except _PickleError as exc:
            completed, error, truncated = False, str(exc), isinstance(exc, _Truncated)
        except (ValueError, EOFError, UnicodeDecodeError, struct.error, OverflowError, MemoryError, IndexError, KeyError, TypeError) as exc:
            completed, error = False, short_error(exc)
        return WalkResult(
            self.events, completed, error, self.stream.tell(), self.joblib_skipped, tuple(self.skipped), tuple(self.nested), truncated, self.imports
        )

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
        if isinstance(inst.cls, _Global) and inst.cls.dotted == "functools.partial":
            # partial.__setstate__ takes (func, args, kwds, dict): the function can be replaced here
            self._check_partial(state[0] if isinstance(state, tuple) and state else None)
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
        raise _Truncated("pickle ended in the middle of a text argument")
    return line[:-1]


def _genops(stream: io.BytesIO) -> Iterator[tuple[Any, Any, int]]:
    """Like ``pickletools.genops`` but decodes text arguments exactly as the real unpickler does,
    and checks the FRAME boundaries.

    ``genops`` parses INT/LONG with ``int(s)`` where the unpickler accepts ``int(s, 0)`` (hex,
    octal, underscores); a scanner that stops where the unpickler goes on can be bypassed.
    GLOBAL/INST/PERSID lines are returned raw and re-decoded by the caller.

    Frames: an opcode whose bytes run past the end of its frame, a FRAME opened inside another
    frame, a frame that runs past STOP, or joblib array bytes (skipped by the caller, who moves
    the stream) inside a frame make the stream malformed: ``pickle.load`` from a file reads such a
    stream differently from a linear reader (and from ``pickle.loads``), so what this walk sees is
    not what a loader runs (python/cpython#154848, fickling's ``frame_boundary_divergence``).
    Stricter than CPython in one benign case no pickler writes (a frame ending between an
    opcode and its argument).
    """
    code2op = pickletools.code2op
    frame_end: int | None = None
    end = stream.tell()
    while True:
        pos = stream.tell()
        if frame_end is not None and pos != end and end < frame_end:
            raise _PickleError(f"malformed pickle framing: joblib array bytes at offset {end} inside the frame ending at offset {frame_end}")
        if frame_end is not None and pos >= frame_end:
            frame_end = None
        code = stream.read(1)
        if not code:
            raise _Truncated("pickle ended before STOP")
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
            try:
                arg = opcode.arg.reader(stream)
            except ValueError as exc:
                if any(message in str(exc) for message in _TRUNCATION_MESSAGES):
                    raise _Truncated(f"{name} argument runs past the end of the data") from exc
                raise
        end = stream.tell()
        if frame_end is not None and end > frame_end:
            raise _PickleError(f"malformed pickle framing: {name} at offset {pos} runs past the end of its frame at offset {frame_end}")
        if name == "FRAME":
            if frame_end is not None:
                raise _PickleError(f"malformed pickle framing: FRAME at offset {pos} opens inside the frame ending at offset {frame_end}")
            frame_end = end + arg
        elif name == "STOP" and frame_end is not None and end < frame_end:
            raise _PickleError(f"malformed pickle framing: the frame ending at offset {frame_end} runs past STOP at offset {pos}")
        yield opcode, arg, pos
        if name == "STOP":
            return


def _maybe_str(value: Any) -> bool:
    """Whether a symbolic value could be a str at load time (results of calls, persistent objects)."""
    return isinstance(value, (str, _Obj, _Global)) or value is _ANY


def _decode_str(arg: Any) -> Any:
    if isinstance(arg, bytes):
        try:
            return arg.decode("ascii")
        except UnicodeDecodeError:
            return _OPAQUE
    return arg


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



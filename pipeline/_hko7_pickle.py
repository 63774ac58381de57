"""Private reader of the published HKO-7 catalogue pickles that cannot run code.

The published catalogues (``pd/hko7_*.pkl``) are pandas DataFrames pickled with protocol 2 by
Python 2.7 and pandas 0.19. Loading them with :func:`pickle.load` or :func:`pandas.read_pickle`
would import and call whatever globals the file names, and with a modern pandas it fails anyway
(``No module named 'pandas.indexes'``). This module reads them with a restricted unpickler:

* :data:`ALLOWED_GLOBALS` is exactly the set of globals those files reference; any other global
  (``os system``, ``builtins eval``, ...) is refused when the file is scanned, before
  unpickling starts, and again by :meth:`_CatalogueUnpickler.find_class`, so nothing named by
  the file is ever imported or called;
* every allowed global except the harmless ``slice`` and ``timedelta`` is a *stand-in*: the
  pandas and numpy constructors become small classes here that only record their arguments and
  state. No pandas or numpy object is built from the pickle; the frame times are the raw
  little-endian int64 nanoseconds of the ``DatetimeIndex``'s ``datetime64[ns]`` array;
* Python 2 byte strings are decoded as latin-1 (the raw array bytes survive unchanged).

The index's ``freq`` (``Minute(6)``) is recorded but not used: the times come from the data,
so gaps and off-grid times are kept as published.
"""

from __future__ import annotations

import datetime
import io
import pickle
import pickletools
from pathlib import Path

import numpy as np

__all__ = ["ALLOWED_GLOBALS", "read_catalogue_times"]

_MAX_BYTES = 256 * 1024 * 1024


class _Recorder:
    """Stand-in for a class the pickle instantiates: keeps constructor args and state."""

    kind = "object"
    args: tuple = ()  # NEWOBJ calls __new__ only: class-level defaults
    state: object = None

    def __init__(self, *args: object) -> None:
        self.args = args
        self.state: object = None

    def __setstate__(self, state: object) -> None:
        self.state = state


class _DataFrame(_Recorder):
    kind = "pandas.core.frame DataFrame"


class _BlockManager(_Recorder):
    kind = "pandas.core.internals BlockManager"


class _Minute(_Recorder):
    kind = "pandas.tseries.offsets Minute"


class _Array(_Recorder):
    """Stand-in of ``numpy.core.multiarray._reconstruct(ndarray, shape, typecode)``."""

    kind = "numpy ndarray"


class _Dtype(_Recorder):
    """Stand-in of ``numpy.dtype(spec, align, copy)``."""

    kind = "numpy dtype"


class _ClassMarker:
    """Stand-in of a class passed as an argument (``ndarray``, ``Index``, ``DatetimeIndex``)."""

    def __init__(self, name: str) -> None:
        self.name = name


class _IndexStandIn:
    """What ``_new_Index`` / ``_new_DatetimeIndex`` would have built: class name and attributes."""

    def __init__(self, factory: str, cls: object, attrs: object) -> None:
        self.factory = factory
        self.cls = cls
        self.attrs = attrs


def _new_index(cls: object, attrs: object) -> _IndexStandIn:
    return _IndexStandIn("_new_Index", cls, attrs)


def _new_datetime_index(cls: object, attrs: object) -> _IndexStandIn:
    return _IndexStandIn("_new_DatetimeIndex", cls, attrs)


ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("__builtin__", "slice"): slice,
    ("datetime", "timedelta"): datetime.timedelta,
    ("numpy", "dtype"): _Dtype,
    ("numpy", "ndarray"): _ClassMarker("numpy.ndarray"),
    ("numpy.core.multiarray", "_reconstruct"): _Array,
    ("pandas.core.frame", "DataFrame"): _DataFrame,
    ("pandas.core.internals", "BlockManager"): _BlockManager,
    ("pandas.indexes.base", "Index"): _ClassMarker("pandas.indexes.base.Index"),
    ("pandas.indexes.base", "_new_Index"): _new_index,
    ("pandas.tseries.index", "DatetimeIndex"): _ClassMarker("pandas.tseries.index.DatetimeIndex"),
    ("pandas.tseries.index", "_new_DatetimeIndex"): _new_datetime_index,
    ("pandas.tseries.offsets", "Minute"): _Minute,
}
"""The globals the published catalogues reference, each mapped to its harmless stand-in."""

# opcodes that load code or objects by other routes than GLOBAL: never in these files
_FORBIDDEN_OPCODES = {
    "STACK_GLOBAL",
    "INST",
    "OBJ",
    "PERSID",
    "BINPERSID",
    "EXT1",
    "EXT2",
    "EXT4",
    "NEWOBJ_EX",
}


class _CatalogueUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, path: Path) -> None:
        super().__init__(io.BytesIO(data), fix_imports=False, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> object:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise ValueError(_refusal(self._path, f"{module}.{name}")) from None

    def persistent_load(self, pid: object) -> object:
        raise ValueError(_refusal(self._path, "a persistent id"))


def _refusal(path: Path, what: str) -> str:
    return (
        f"{path}: the pickle references {what}, which no published HKO-7 catalogue does; "
        "refused before unpickling anything"
    )


def _scan(data: bytes, path: Path) -> None:
    """Refuse a pickle naming a global outside the allowlist (nothing is unpickled)."""
    try:
        for op, arg, _pos in pickletools.genops(data):
            if op.name in _FORBIDDEN_OPCODES:
                raise ValueError(_refusal(path, f"opcode {op.name}"))
            if op.name == "GLOBAL":
                module, _, name = str(arg).partition(" ")
                if (module, name) not in ALLOWED_GLOBALS:
                    raise ValueError(_refusal(path, f"{module}.{name}"))
            if op.name == "PROTO" and int(arg) > 2:
                raise ValueError(
                    f"{path}: pickle protocol {arg}; the published catalogues use protocol 2"
                )
    except ValueError as err:
        if str(path) in str(err):
            raise
        raise ValueError(f"{path}: not a readable pickle ({err})") from None


def _as_bytes(raw: object, path: Path) -> bytes:
    if isinstance(raw, bytes):
        return raw
    if isinstance(raw, str):  # a Python 2 byte string, decoded as latin-1: byte-exact
        return raw.encode("latin-1")
    raise ValueError(f"{path}: index data is {type(raw).__name__}, expected raw bytes")


def _index_nanoseconds(index: object, path: Path) -> np.ndarray:
    if not isinstance(index, _IndexStandIn) or index.factory != "_new_DatetimeIndex":
        raise ValueError(f"{path}: the DataFrame's row index is not a DatetimeIndex")
    attrs = index.attrs if isinstance(index.attrs, dict) else {}
    arr = attrs.get("data")
    if not isinstance(arr, _Array) or not isinstance(arr.state, tuple) or len(arr.state) != 5:
        raise ValueError(f"{path}: DatetimeIndex without its datetime64 data array")
    _version, shape, dtype, fortran, raw = arr.state
    spec = dtype.args[0] if isinstance(dtype, _Dtype) and dtype.args else dtype
    if not isinstance(spec, str) or spec.lstrip("<=") not in ("M8", "M8[ns]"):
        raise ValueError(f"{path}: index data has dtype {spec!r}, expected 'M8' (datetime64[ns])")
    state = dtype.state if isinstance(dtype.state, tuple) else ()
    order = state[1] if len(state) > 1 else "<"
    units = [u for u in _flatten(state[8:]) if isinstance(u, str | bytes)]
    if units and units[0] not in ("ns", b"ns"):
        raise ValueError(f"{path}: index unit {units[0]!r}, expected 'ns'")
    if not (isinstance(shape, tuple) and len(shape) == 1) or fortran not in (False, 0):
        raise ValueError(f"{path}: index data of shape {shape}, expected one dimension")
    buf = _as_bytes(raw, path)
    if len(buf) != 8 * int(shape[0]):
        raise ValueError(f"{path}: index data holds {len(buf)} bytes for {shape[0]} times")
    return np.frombuffer(buf, dtype=(">i8" if order == ">" else "<i8")).astype(np.int64)


def _flatten(obj: object) -> list[object]:
    if isinstance(obj, tuple | list):
        return [y for x in obj for y in _flatten(x)]
    return [obj]


def read_catalogue_times(path: str | Path) -> np.ndarray:
    """Frame times of a published HKO-7 catalogue pickle, read without running its code.

    Parameters
    ----------
    path : path
        A ``pd/hko7_*.pkl`` file (pandas 0.19 DataFrame, pickle protocol 2).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` int64 nanoseconds since 1970-01-01 of the DataFrame's index, in file order.

    Raises
    ------
    ValueError
        If the file names any global outside :data:`ALLOWED_GLOBALS` (refused before anything
        is unpickled), is not a pickle, or does not hold a DataFrame with a ``datetime64[ns]``
        index.
    """
    p = Path(path)
    if p.stat().st_size > _MAX_BYTES:
        raise ValueError(f"{p}: {p.stat().st_size} bytes, larger than any HKO-7 catalogue")
    data = p.read_bytes()
    _scan(data, p)
    try:
        obj = _CatalogueUnpickler(data, p).load()
    except ValueError as err:
        if str(p) in str(err):
            raise
        raise ValueError(f"{p}: not a readable catalogue pickle ({err})") from None
    except Exception as err:  # malformed data reaching a stand-in, slice or timedelta
        raise ValueError(f"{p}: not a readable catalogue pickle ({err!r})") from None
    if not isinstance(obj, _DataFrame) or not isinstance(obj.state, dict):
        raise ValueError(f"{p}: holds no pandas DataFrame (the catalogues are DataFrames)")
    mgr = obj.state.get("_data")
    if not isinstance(mgr, _BlockManager) or not isinstance(mgr.state, tuple) or not mgr.state:
        raise ValueError(f"{p}: DataFrame without its BlockManager")
    axes = mgr.state[0]
    if not isinstance(axes, list | tuple) or len(axes) != 2:
        raise ValueError(f"{p}: DataFrame with {len(axes)} axes, expected columns and rows")
    return _index_nanoseconds(axes[1], p)

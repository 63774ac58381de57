"""The ``odim`` source: ODIM_H5 v2.x Cartesian composites and products (OPERA, EUMETNET, ...).

Format (EUMETNET OPERA "ODIM_H5" information model, v2.0-2.4): ``/what`` (``object``
COMP or IMAGE, ``version`` "H5rad 2.x", ``date`` YYYYMMDD, ``time`` HHMMSS: the nominal
time, ``source``), ``/where`` (``projdef`` PROJ string, ``xsize``, ``ysize``,
``xscale``, ``yscale`` in m, corner coordinates ``LL_lon/LL_lat``, ``UR_lon/UR_lat``,
optionally ``UL_*``/``LR_*``), ``/how`` (optional; ``zr_a``, ``zr_b``) and
``datasetN/dataN/data`` (2-D, row 0 north) with ``datasetN/dataN/what`` (or
``datasetN/what``) ``quantity``, ``gain``, ``offset``, ``nodata``, ``undetect`` and, for
accumulations, ``startdate/starttime/enddate/endtime``.

Values come from :func:`pysteps.io.importers.import_odim_hdf5` (``physical = raw * gain +
offset``; *undetect* becomes ``offset`` for RATE/ACRR and -30 dBZ for DBZH, i.e. valid
no-rain; *nodata* becomes NaN, i.e. invalid), and its georeferencing (corner
coordinates projected with ``projdef``). What pysteps does not read comes from the file
with h5py: the nominal time, which quantity the file holds (DBZH, then RATE, then ACRR),
the accumulation interval and the Z-R relation (``how/zr_a``, ``how/zr_b``; Marshall-
Palmer otherwise).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from pipeline.geo import grid_from_edges
from pipeline.sources._hdf5 import check_hdf5_shapes
from pipeline.sources.base import MARSHALL_PALMER, RadarSource, SourceFileError, SourceFrame

QUANTITIES: tuple[str, ...] = ("DBZH", "RATE", "ACRR")
"""Quantities read, in order of preference: reflectivity, rain rate (mm/h), depth (mm)."""
_UNIT = {"DBZH": "dBZ", "RATE": "mm/h", "ACRR": "mm"}
_CARTESIAN = ("COMP", "IMAGE")


def _text(value) -> str:
    if isinstance(value, bytes | np.bytes_):
        return value.decode("ascii", "replace").strip("\x00 ")
    if isinstance(value, np.ndarray) and value.size == 1:
        return _text(value.reshape(-1)[0])
    return str(value).strip()


def _stamp(date: str, time: str, what: str, path: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(pd.to_datetime(date + time[:6], format="%Y%m%d%H%M%S"))
    except (ValueError, TypeError):
        raise SourceFileError(
            path, f"{what} {date!r} {time!r} is not YYYYMMDD HHMMSS", "odim"
        ) from None


def _header(path: str) -> dict:
    """``object``, ``version``, ``time``, ``source``, quantities and ``how`` of an ODIM file."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise SourceFileError(path, f"not a readable HDF5 file ({err})", "odim") from None
    try:
        with f:
            return _read_header(f, path)
    except SourceFileError:
        raise
    except Exception as err:  # noqa: BLE001 - damaged HDF5: h5py raises KeyError, RuntimeError...
        raise SourceFileError(
            path, f"damaged HDF5 structure ({type(err).__name__}: {err})", "odim"
        ) from None


def _read_header(f, path: str) -> dict:
    """The fields of :func:`_header` from the open file *f*."""
    if "what" not in f or "where" not in f:
        raise SourceFileError(path, "no /what and /where groups: not ODIM_H5", "odim")
    what = f["what"].attrs
    missing = [k for k in ("object", "date", "time") if k not in what]
    if missing:
        raise SourceFileError(path, f"/what lacks {missing}: not ODIM_H5", "odim")
    out = {
        "object": _text(what["object"]),
        "version": _text(what.get("version", b"")),
        "source": _text(what.get("source", b"")),
        "time": _stamp(_text(what["date"]), _text(what["time"]), "/what date/time", path),
        "how": {k: v for k, v in f["how"].attrs.items()} if "how" in f else {},
        "datasets": [],
    }
    for name in sorted(k for k in f if k.startswith("dataset")):
        ds = f[name]
        outer = dict(ds["what"].attrs) if "what" in ds else {}
        for sub in sorted(k for k in ds if k.startswith("data")):
            inner = dict(ds[sub]["what"].attrs) if "what" in ds[sub] else {}
            attrs = {**outer, **inner}
            if "quantity" in attrs:
                out["datasets"].append((_text(attrs["quantity"]), attrs))
    return out


def _accutime(attrs: dict, path: str) -> float:
    keys = ("startdate", "starttime", "enddate", "endtime")
    if not all(k in attrs for k in keys):
        raise SourceFileError(
            path, "ACRR without startdate/starttime/enddate/endtime: unknown interval", "odim"
        )
    t0 = _stamp(_text(attrs["startdate"]), _text(attrs["starttime"]), "start", path)
    t1 = _stamp(_text(attrs["enddate"]), _text(attrs["endtime"]), "end", path)
    minutes = (t1 - t0) / pd.Timedelta("1min")
    if minutes <= 0:
        raise SourceFileError(path, f"ACRR interval {t0} to {t1} is not positive", "odim")
    return float(minutes)


class ODIMSource(RadarSource):
    """ODIM_H5 v2.x Cartesian products (``*.h5``, ``*.hdf``, ``*.hdf5``; time from ``/what``)."""

    name = "odim"
    description = "ODIM_H5 v2.x radar composite (OPERA/EUMETNET information model)"
    suffixes = (".h5", ".hdf", ".hdf5")
    expected = "an ODIM_H5 Cartesian product (/what object COMP or IMAGE)"
    uses_hdf5 = True  # h5py is not thread-safe: readers run under one lock

    def file_time(self, path: str) -> pd.Timestamp:
        head = _header(path)
        if head["object"] not in _CARTESIAN:
            raise SourceFileError(
                path,
                f"/what object {head['object']!r}: only Cartesian products "
                f"{'/'.join(_CARTESIAN)} are read (not polar volumes or scans)",
                self.name,
            )
        return head["time"]

    def read(self, path: str | os.PathLike, mask_path: str = "") -> SourceFrame:
        """Read the first of DBZH, RATE, ACRR in the file (see the module docstring)."""
        from pysteps.io.importers import import_odim_hdf5

        path = str(path)
        head = _header(path)
        if head["object"] not in _CARTESIAN:
            raise SourceFileError(path, f"/what object {head['object']!r} is not Cartesian", "odim")
        have = [q for q, _ in head["datasets"]]
        qty = next((q for q in QUANTITIES if q in have), None)
        if qty is None:
            raise SourceFileError(
                path, f"no dataset of quantity {'/'.join(QUANTITIES)} (has {have})", self.name
            )
        attrs = next(a for q, a in head["datasets"] if q == qty)
        accutime = _accutime(attrs, path) if qty == "ACRR" else None
        too_big = check_hdf5_shapes(path)
        if too_big is not None:
            raise SourceFileError(path, too_big, self.name)
        try:
            values, _quality, meta = import_odim_hdf5(path, qty=qty)
        except Exception as err:  # pysteps raises KeyError, OSError, DataModelError...
            raise SourceFileError(path, f"pysteps cannot read it ({err!r})", self.name) from None
        values = np.asarray(values, dtype=np.float64)
        try:
            grid = grid_from_edges(
                meta["projection"], meta["x1"], meta["y1"], meta["x2"], meta["y2"], values.shape
            )
        except (KeyError, ValueError) as err:
            raise SourceFileError(
                path, f"unusable /where georeferencing ({err})", self.name
            ) from None
        how = head["how"]
        a = float(how["zr_a"]) if "zr_a" in how else MARSHALL_PALMER[0]
        b = float(how["zr_b"]) if "zr_b" in how else MARSHALL_PALMER[1]
        return SourceFrame(
            values=values,
            valid=np.isfinite(values),
            grid=grid,
            time=head["time"],
            unit=_UNIT[qty],
            accutime=accutime,
            zr_a=a,
            zr_b=b,
            metadata={
                "quantity": qty,
                "object": head["object"],
                "version": head["version"],
                "source": head["source"],
                "pixel_size_m": (meta.get("xpixelsize"), meta.get("ypixelsize")),
            },
        )

"""Writers of small radar files in each source's published format (for the tests only).

Each follows the format description in the source's module docstring
(:mod:`pipeline.sources`): ODIM_H5 v2.2 (``/what``, ``/where``, ``/how``,
``dataset1/data1``), KNMI HDF5 (``image1/image_data``, ``geographic``), BoM Rainfields
NetCDF, MeteoSwiss GIF (CCS4 digital numbers) and FMI PGM (``P5`` with header comments).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

ODIM_PROJ = "+proj=laea +lat_0=55 +lon_0=10 +x_0=1950000 +y_0=-2100000 +ellps=WGS84 +units=m"
"""The OPERA composite projection."""


def _s(text: str) -> np.bytes_:
    return np.bytes_(text.encode("ascii"))


def write_odim(
    path: str | Path,
    raw: np.ndarray,
    time: str,
    *,
    quantity: str = "DBZH",
    gain: float = 0.5,
    offset: float = -32.0,
    nodata: float = 255,
    undetect: float = 0,
    x0_m: float = 1_000_000.0,
    y_top_m: float = -1_000_000.0,
    scale_m: float = 2000.0,
    obj: str = "COMP",
    accumulation: tuple[str, str] | None = None,
    zr: tuple[float, float] | None = None,
) -> Path:
    """An ODIM_H5 Cartesian product; *raw* ``(H, W)``, row 0 north; *time* ``YYYYmmddHHMMSS``."""
    import h5py
    import pyproj

    h, w = raw.shape
    x1, x2 = x0_m, x0_m + w * scale_m
    y2, y1 = y_top_m, y_top_m - h * scale_m
    inv = pyproj.Transformer.from_crs(pyproj.CRS.from_proj4(ODIM_PROJ), "EPSG:4326", always_xy=True)
    corners = {k: inv.transform(x, y) for k, (x, y) in {
        "LL": (x1, y1), "UR": (x2, y2), "UL": (x1, y2), "LR": (x2, y1)}.items()}  # fmt: skip
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(p, "w") as f:
        f.attrs["Conventions"] = _s("ODIM_H5/V2_2")
        what = f.create_group("what")
        what.attrs.update(
            {"object": _s(obj), "version": _s("H5rad 2.2"), "date": _s(time[:8]),
             "time": _s(time[8:14]), "source": _s("ORG:247,CMT:test composite")}
        )  # fmt: skip
        where = f.create_group("where")
        where.attrs.update(
            {"projdef": _s(ODIM_PROJ), "xsize": np.int64(w), "ysize": np.int64(h),
             "xscale": np.float64(scale_m), "yscale": np.float64(scale_m)}
        )  # fmt: skip
        for k, (lon, lat) in corners.items():
            where.attrs[f"{k}_lon"] = np.float64(lon)
            where.attrs[f"{k}_lat"] = np.float64(lat)
        how = f.create_group("how")
        how.attrs["software"] = _s("tests")
        if zr is not None:
            how.attrs["zr_a"], how.attrs["zr_b"] = np.float64(zr[0]), np.float64(zr[1])
        d = f.create_group("dataset1/data1")
        d.create_dataset("data", data=raw)
        dw = d.create_group("what")
        dw.attrs.update(
            {"quantity": _s(quantity), "gain": np.float64(gain), "offset": np.float64(offset),
             "nodata": np.float64(nodata), "undetect": np.float64(undetect)}
        )  # fmt: skip
        dsw = f.create_group("dataset1/what")
        dsw.attrs["product"] = _s("COMP")
        if accumulation is not None:
            (sd, st), (ed, et) = (accumulation[0][:8], accumulation[0][8:]), (
                accumulation[1][:8], accumulation[1][8:])  # fmt: skip
            dsw.attrs.update({"startdate": _s(sd), "starttime": _s(st),
                              "enddate": _s(ed), "endtime": _s(et)})  # fmt: skip
    return p


KNMI_PROJ = "+proj=stere +lat_0=90 +lon_0=0.0 +lat_ts=60.0 +a=6378.137 +b=6356.752 +x_0=0 +y_0=0"
"""KNMI's PROJ string (ellipsoid axes in km, as the files give them)."""


def write_knmi(path: str | Path, raw: np.ndarray, col_offset=0.0, row_offset=3649.98) -> Path:
    """A KNMI HDF5 composite: *raw* ``(H, W)`` uint16 (0.01 mm, 65535 no data), 1 km pixels."""
    import h5py

    h, w = raw.shape
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(p, "w") as f:
        f.create_group("image1").create_dataset("image_data", data=raw)
        f["image1"].attrs["image_product_name"] = np.bytes_(b"RAD_NL25_RAC_MFBS_EM_5min")
        g = f.create_group("geographic")
        g.attrs["geo_number_columns"] = np.array([w], dtype=np.int32)
        g.attrs["geo_number_rows"] = np.array([h], dtype=np.int32)
        g.attrs["geo_pixel_size_x"] = np.array([1.0], dtype=np.float32)
        g.attrs["geo_pixel_size_y"] = np.array([-1.0], dtype=np.float32)
        g.attrs["geo_column_offset"] = np.array([col_offset], dtype=np.float32)
        g.attrs["geo_row_offset"] = np.array([row_offset], dtype=np.float32)
        g.attrs["geo_dim_pixel"] = np.bytes_(b"KM,KM")
        mp = g.create_group("map_projection")
        mp.attrs["projection_proj4_params"] = np.bytes_(KNMI_PROJ.encode())
    return p


BOM_AEA = {"lon_0": 153.0, "lat_0": -27.5, "lat_1": -32.2, "lat_2": -22.8}


def write_bom(path: str | Path, values: np.ndarray, valid_time: str, accutime_min: int = 10,
              x0_km: float = -100.0, y_top_km: float = 100.0, dx_km: float = 2.0) -> Path:  # fmt: skip
    """A BoM Rainfields NetCDF: *values* ``(H, W)`` mm (NaN = no data), row 0 north, y increasing on disk."""
    import netCDF4

    h, w = values.shape
    x = x0_km + (np.arange(w) + 0.5) * dx_km
    y = y_top_km - (np.arange(h) + 0.5) * dx_km
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(p, "w") as nc:
        nc.createDimension("x", w)
        nc.createDimension("y", h)
        vx = nc.createVariable("x", "f8", ("x",))
        vx.units = "km"
        vx[:] = x
        vy = nc.createVariable("y", "f8", ("y",))
        vy.units = "km"
        vy[:] = y[::-1]  # south to north on disk, as many NetCDF grids
        proj = nc.createVariable("proj", "i4")
        proj.grid_mapping_name = "albers_conical_equal_area"
        proj.longitude_of_central_meridian = BOM_AEA["lon_0"]
        proj.latitude_of_projection_origin = BOM_AEA["lat_0"]
        proj.standard_parallel = np.array([BOM_AEA["lat_1"], BOM_AEA["lat_2"]])
        t1 = np.datetime64(valid_time, "s").astype(np.int64)
        for name, val in (("valid_time", t1), ("start_time", t1 - 60 * accutime_min)):
            v = nc.createVariable(name, "i8")
            v.units = "seconds since 1970-01-01 00:00:00"
            v[...] = val
        pr = nc.createVariable("precipitation", "f4", ("y", "x"), fill_value=-1.0)
        pr.units = "mm"
        pr.grid_mapping = "proj"
        pr[:] = np.ma.masked_invalid(values[::-1])
    return p


def write_mch_gif(path: str | Path, dn: np.ndarray) -> Path:
    """A MeteoSwiss GIF: *dn* ``(640, 710)`` uint8 digital numbers (palette indices kept)."""
    from PIL import Image

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.ascontiguousarray(dn, dtype=np.uint8), mode="P")
    img.putpalette([c for i in range(256) for c in (i, i, 255 - i)])
    img.save(p, format="GIF", optimize=False)
    return p


FMI_HEADER = """P5
# obstime {obstime}
# producttype CAPPI
# productname LOWEST
# param CorrectedReflectivity
# metersperpixel_x 1000.0
# metersperpixel_y 1000.0
# projection radar {{
# type stereographic
# centrallongitude 25
# centrallatitude 90
# truelatitude 60
# bottomleft {ll_lon:.6f} {ll_lat:.6f}
# topright {ur_lon:.6f} {ur_lat:.6f}
# }}
{w} {h}
255
"""

FMI_PROJ = (
    "+proj=stere +lon_0=25E +lat_0=90N +lat_ts=60 +a=6371288 +x_0=380886.310 "
    "+y_0=3395677.920 +no_defs"
)
"""pysteps' projection of FMI composites."""


def write_fmi(path: str | Path, pixels: np.ndarray, obstime: str, x1_m=0.0, y1_m=0.0) -> Path:
    """An FMI gzipped PGM: *pixels* ``(H, W)`` uint8 (255 = no data), 1 km pixels, LL corner at (x1, y1) m."""
    import pyproj

    h, w = pixels.shape
    inv = pyproj.Transformer.from_crs(pyproj.CRS.from_proj4(FMI_PROJ), "EPSG:4326", always_xy=True)
    ll_lon, ll_lat = inv.transform(x1_m, y1_m)
    ur_lon, ur_lat = inv.transform(x1_m + 1000.0 * w, y1_m + 1000.0 * h)
    head = FMI_HEADER.format(
        obstime=obstime, ll_lon=ll_lon, ll_lat=ll_lat, ur_lon=ur_lon, ur_lat=ur_lat, w=w, h=h
    )
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(p, "wb") as fh:
        fh.write(head.encode("ascii") + np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
    return p

"""Mutated radar files for the fuzz tests and ``benchmarks/fuzz.py`` (issue 25, point 6).

For each reader of the front door (:data:`READERS`: the HKO-7 PNG frame and mask, the
archive catalogue, and the ODIM, KNMI, BoM, MeteoSwiss and FMI sources) a valid seed
file is written once (:func:`write_seeds`), then :func:`mutate` derives a broken copy:
truncated, bytes flipped or overwritten, a header field changed (with the checksums
that guard it recomputed, so the change reaches the parser), a size declared huge,
or, for HDF5 / NetCDF files, an attribute, group or dataset edited in place. Choices
come from a :class:`Chooser`: hypothesis' ``data.draw`` in the tests, a seeded
``random.Random`` in the benchmark, so both explore the same mutations.

:func:`try_read` reads a mutated file and classifies the outcome: ``"read"`` (the
reader returned), ``"named"`` (it raised the project's error for a bad file, a
``FrameReadError`` / ``SourceFileError`` / ``ValueError`` naming the file), or
``"crash"`` (anything else, or more than :data:`MAX_TRACED_BYTES` allocated on the way).
"""

from __future__ import annotations

import gzip
import random
import struct
import tracemalloc
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tests.pipeline import radar_formats as rf

MAX_TRACED_BYTES = 512 * 2**20
"""Most memory (traced by ``tracemalloc``: numpy and Python) one read may take."""


class Chooser(Protocol):
    """Where the mutations' choices come from."""

    def integer(self, lo: int, hi: int) -> int:
        """An integer in ``lo..hi`` inclusive."""

    def raw(self, n: int) -> bytes:
        """*n* arbitrary bytes."""


class RandomChooser:
    """Choices from ``random.Random(seed)`` (the benchmark)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def integer(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def raw(self, n: int) -> bytes:
        return bytes(self.rng.getrandbits(8) for _ in range(n))


class DrawChooser:
    """Choices drawn by hypothesis (``st.data()``), so that it can shrink a failure."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self.data, self.st = data, st

    def integer(self, lo: int, hi: int) -> int:
        return self.data.draw(self.st.integers(lo, hi))

    def raw(self, n: int) -> bytes:
        return self.data.draw(self.st.binary(min_size=n, max_size=n))


def _pick(c: Chooser, items: list | tuple) -> Any:
    return items[c.integer(0, len(items) - 1)]


# --------------------------------------------------------------------------- seeds

T0 = "20230601120000"


def _seed_png(path: Path) -> None:
    from pipeline import hko7

    px = np.zeros((480, 480), np.uint8)
    px[100:140, 200:260] = 120
    hko7.write_frame(path, px)


def _seed_mask(path: Path) -> None:
    from pipeline import hko7

    m = np.ones((480, 480), bool)
    m[:20] = False
    hko7.write_mask(path, m)


def _seed_catalogue(path: Path) -> None:
    rows = ["time,frame_path,has_mask"]
    for k in range(6):
        rows.append(
            f"2015-06-01T12:{6 * k:02d}:00,radarPNG/2015/06/01/RAD1506011{2}{6 * k:02d}00.png,"
            + ("True" if k % 2 else "False")
        )
    path.write_text("\n".join(rows) + "\n")


def _seed_odim(path: Path) -> None:
    raw = np.zeros((20, 30), np.uint8)
    raw[:2] = 255
    raw[8:12, 4:10] = 150
    rf.write_odim(path, raw, T0)


def _seed_knmi(path: Path) -> None:
    k = np.zeros((40, 30), np.uint16)
    k[:3] = 65535
    k[20, 10] = 100
    rf.write_knmi(path, k)


def _seed_bom(path: Path) -> None:
    v = np.zeros((16, 20), np.float32)
    v[4:8, 5:9] = 2.5
    v[0, 0] = np.nan
    rf.write_bom(path, v, "2018-06-16T00:10:00")


def _seed_mch(path: Path) -> None:
    dn = np.zeros((640, 710), np.uint8)
    dn[:4] = 255
    dn[300, 300] = 100
    rf.write_mch_gif(path, dn)


def _seed_fmi(path: Path) -> None:
    p = np.zeros((40, 30), np.uint8)
    p[:2] = 255
    p[20, 10] = 150
    rf.write_fmi(path, p, "202306011200", 100_000.0, 200_000.0)


@dataclass(frozen=True)
class Reader:
    """One reader of the front door: its seed file and how to call it."""

    name: str
    file_name: str
    write_seed: Callable[[Path], None]
    kind: str  # "png", "zlib", "csv", "hdf5", "gif", "pgm.gz"

    def read(self, path: Path) -> object:
        from pipeline import hko7, hko7_catalogue
        from pipeline.sources import get_source

        if self.name == "hko7_png":
            return hko7.read_frame(path)
        if self.name == "hko7_mask":
            return hko7.read_mask(path)
        if self.name == "catalogue":
            return hko7_catalogue.read_catalogue(path)
        return get_source(self.name).read(path)

    def errors(self) -> tuple[type[BaseException], ...]:
        """The error types that mean "named and skipped" for this reader."""
        from pipeline.hko7 import FrameReadError
        from pipeline.sources.base import SourceFileError

        if self.name == "catalogue":
            return (ValueError,)
        return (FrameReadError,) if self.name.startswith("hko7") else (SourceFileError,)


READERS: dict[str, Reader] = {
    r.name: r
    for r in (
        Reader("hko7_png", "RAD150601120000.png", _seed_png, "png"),
        Reader("hko7_mask", "RAD150601120000.mask", _seed_mask, "zlib"),
        Reader("catalogue", "catalogue.csv", _seed_catalogue, "csv"),
        Reader("odim", "comp_a.h5", _seed_odim, "hdf5"),
        Reader("knmi", "RAD_NL25_RAC_MFBS_EM_5min_201901010005_NL.h5", _seed_knmi, "hdf5"),
        Reader("bom", "2_20180616_001000.prcp-cscn.nc", _seed_bom, "hdf5"),
        Reader("mch", "AQC231521200V_00005.801.gif", _seed_mch, "gif"),
        Reader(
            "fmi", "202306011200_fmi.radar.composite.lowest_FIN_SUOMI1.pgm.gz", _seed_fmi, "pgm.gz"
        ),
    )
}
"""Every reader fuzzed, by name."""


def write_seeds(folder: Path) -> dict[str, bytes]:
    """Write each reader's valid seed under *folder*; their bytes by reader name."""
    out = {}
    for r in READERS.values():
        path = folder / "seeds" / r.name / r.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        r.write_seed(path)
        out[r.name] = path.read_bytes()
    return out


# --------------------------------------------------------------------------- mutations

_HUGE = (0, 1, 479, 481, 65535, 20000, 2**31 - 1, 2**32 - 1)


def _truncate(c: Chooser, data: bytes) -> bytes:
    return data[: c.integer(0, max(len(data) - 1, 0))]


def _flip(c: Chooser, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(c.integer(1, 8)):
        i = c.integer(0, len(buf) - 1)
        buf[i] ^= c.integer(1, 255)
    return bytes(buf)


def _overwrite(c: Chooser, data: bytes) -> bytes:
    buf = bytearray(data)
    n = c.integer(1, 64)
    # mostly near the start, where the headers are
    i = c.integer(0, min(len(buf) - 1, 512)) if c.integer(0, 3) else c.integer(0, len(buf) - 1)
    buf[i : i + n] = c.raw(n)
    return bytes(buf)


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, i = [], 8
    while i + 8 <= len(data):
        (n,) = struct.unpack(">I", data[i : i + 4])
        chunks.append((data[i + 4 : i + 8], data[i + 8 : i + 8 + n]))
        i += 12 + n
    return chunks


def _png_pack(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = [b"\x89PNG\r\n\x1a\n"]
    for tag, body in chunks:
        crc = zlib.crc32(tag + body) & 0xFFFFFFFF
        out.append(struct.pack(">I", len(body)) + tag + body + struct.pack(">I", crc))
    return b"".join(out)


def _png_header(c: Chooser, data: bytes) -> bytes:
    """A PNG with an IHDR field changed (size, depth, colour type...) and a valid CRC."""
    chunks = _png_chunks(data)
    w, h, depth, colour, comp, filt, lace = struct.unpack(">IIBBBBB", chunks[0][1])
    field = c.integer(0, 6)
    if field == 0:
        w = _pick(c, _HUGE)
    elif field == 1:
        h = _pick(c, _HUGE)
    elif field == 2:
        depth = _pick(c, (1, 2, 4, 16, 0, 255))
    elif field == 3:
        colour = _pick(c, (2, 3, 4, 6, 1, 255))
    elif field == 4:
        comp, filt = c.integer(0, 255), c.integer(0, 255)
    elif field == 5:
        lace = c.integer(0, 255)
    else:  # the image data replaced by a small zlib bomb for a huge declared size
        w = h = 20000
        bomb = zlib.compressobj(9)
        body = b"".join(bomb.compress(b"\0" * 20001) for _ in range(200)) + bomb.flush()
        chunks = [chunks[0], (b"IDAT", body), (b"IEND", b"")]
    chunks[0] = (b"IHDR", struct.pack(">IIBBBBB", w, h, depth, colour, comp, filt, lace))
    return _png_pack(chunks)


def _zlib_stream(c: Chooser, data: bytes) -> bytes:
    """A mask stream re-compressed from changed content: short, long, or a bomb."""
    raw = zlib.decompress(data)
    how = c.integer(0, 3)
    if how == 0:
        return zlib.compress(raw[: c.integer(0, len(raw))])
    if how == 1:
        return zlib.compress(raw + c.raw(c.integer(1, 64)))
    if how == 2:
        return zlib.compress(b"\x01" * (len(raw) * c.integer(2, 40)), 9)
    return zlib.compress(raw)[:-4]  # no Adler-32


def _csv_text(c: Chooser, data: bytes) -> bytes:
    lines = data.decode().splitlines()
    i = c.integer(0, len(lines) - 1)
    cells = lines[i].split(",")
    j = c.integer(0, len(cells) - 1)
    cells[j] = _pick(
        c,
        ("", "garbage", "2015-13-45T99:99:99", "nan", "1e309", "True,False", '"', "\x00",
         "9" * 400, "../../etc/passwd", "-1"),
    )  # fmt: skip
    lines[i] = ",".join(cells)
    if c.integer(0, 4) == 0:
        del lines[c.integer(0, len(lines) - 1)]
    return ("\n".join(lines) + "\n").encode()


def _gif_header(c: Chooser, data: bytes) -> bytes:
    buf = bytearray(data)
    off = _pick(c, (6, 8, 10))  # logical screen width, height, packed flags
    if off == 10:
        buf[10] = c.integer(0, 255)
    else:
        buf[off : off + 2] = _pick(c, _HUGE[:5]).to_bytes(2, "little")
    return bytes(buf)


def _pgm_header(c: Chooser, data: bytes) -> bytes:
    text = gzip.decompress(data)
    head, sep, body = text.partition(b"\n255\n")
    lines = head.split(b"\n")
    i = c.integer(0, len(lines) - 1)
    if lines[i].startswith(b"#") and c.integer(0, 1):
        key = lines[i].split(b" ")[:2]
        lines[i] = b" ".join([*key, _pick(c, (b"", b"x", b"999999999999", b"nan", b"{"))])
    elif c.integer(0, 1):
        lines[-1] = b"%d %d" % (_pick(c, _HUGE), _pick(c, _HUGE))
    else:
        del lines[i]
    return gzip.compress(b"\n".join(lines) + sep + body)


def _gzip_stream(c: Chooser, data: bytes) -> bytes:
    """Changed bytes inside the gzip stream (the outer CRC then refuses most of them)."""
    inner = bytearray(gzip.decompress(data))
    for _ in range(c.integer(1, 8)):
        k = c.integer(0, len(inner) - 1)
        inner[k] ^= c.integer(1, 255)
    return gzip.compress(bytes(inner))


_ATTR_VALUES: tuple[Any, ...] = (
    b"",
    b"garbage",
    -1,
    0,
    2**40,
    float("nan"),
    1e308,
    np.zeros(0),
    np.array([1.0, 2.0, 3.0]),
)


def _hdf5_edit(c: Chooser, path: Path) -> None:
    """Edit the HDF5 file *path* in place: an attribute, a group or a dataset."""
    import h5py

    with h5py.File(path, "r+") as f:
        attrs: list[tuple[str, str]] = [("/", k) for k in f.attrs]
        nodes: list[str] = []

        def visit(name: str, obj: Any) -> None:
            nodes.append(name)
            attrs.extend((name, k) for k in obj.attrs)

        f.visititems(visit)
        datasets = [n for n in nodes if isinstance(f[n], h5py.Dataset)]
        how = c.integer(0, 4)
        if how <= 1 and attrs:
            node, key = _pick(c, attrs)
            obj = f[node]
            if how == 0:
                del obj.attrs[key]
            else:
                obj.attrs[key] = _pick(c, _ATTR_VALUES)
        elif how == 2 and nodes:
            del f[_pick(c, nodes)]
        elif datasets:
            name = _pick(c, datasets)
            old = f[name]
            dtype = old.dtype if old.dtype.kind in "uif" else np.dtype("u1")
            attrs_of = dict(old.attrs)
            if old.ndim < 2 and how == 3:
                return
            del f[name]
            if how == 3:  # declared huge, nothing written: a few kB on disk
                side = _pick(c, (5000, 20000, 100000))
                new = f.create_dataset(name, shape=(side, side), dtype=dtype, chunks=(64, 64))
            else:  # wrong shape or dtype
                shape = _pick(c, ((0, 0), (3,), (1, 2, 3), (2, 2)))
                new = f.create_dataset(name, data=np.full(shape, np.nan, np.float64))
            for k, v in attrs_of.items():
                try:
                    new.attrs[k] = v
                except (TypeError, ValueError, OSError):
                    pass


_BYTE_MUTATIONS = (_truncate, _flip, _overwrite)
_FORMAT_MUTATIONS: dict[str, tuple[Callable[[Chooser, bytes], bytes], ...]] = {
    "png": (_png_header,),
    "zlib": (_zlib_stream,),
    "csv": (_csv_text,),
    "gif": (_gif_header,),
    "pgm.gz": (_pgm_header, _gzip_stream),
    "hdf5": (),
}


def mutate(c: Chooser, reader: Reader, seed: bytes, path: Path) -> str:
    """Write a mutated copy of *seed* to *path*; the mutation's name."""
    formats = _FORMAT_MUTATIONS[reader.kind]
    n_choices = len(_BYTE_MUTATIONS) + len(formats) + (1 if reader.kind == "hdf5" else 0)
    k = c.integer(0, n_choices - 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    if k < len(_BYTE_MUTATIONS):
        fn = _BYTE_MUTATIONS[k]
        path.write_bytes(fn(c, seed))
        return fn.__name__.lstrip("_")
    k -= len(_BYTE_MUTATIONS)
    if k < len(formats):
        path.write_bytes(formats[k](c, seed))
        return formats[k].__name__.lstrip("_")
    path.write_bytes(seed)
    _hdf5_edit(c, path)
    return "hdf5_edit"


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class Outcome:
    """What a reader did with one mutated file."""

    status: str  # "read", "named" or "crash"
    detail: str
    peak_bytes: int


def try_read(reader: Reader, path: Path) -> Outcome:
    """Read *path* with *reader* and classify the outcome (module docstring)."""
    tracemalloc.start()
    try:
        reader.read(path)
        status, detail = "read", ""
    except reader.errors() as err:
        named = str(path) in str(err) or str(getattr(err, "path", "")) == str(path)
        status = "named" if named else "crash"
        detail = f"{type(err).__name__}: {err}"
    except Exception as err:  # noqa: BLE001 - every other error is a crash of the reader
        status, detail = "crash", f"{type(err).__name__}: {err}"
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    if peak > MAX_TRACED_BYTES:
        status, detail = "crash", f"allocated {peak} bytes (limit {MAX_TRACED_BYTES}); {detail}"
    return Outcome(status, detail[:300], peak)

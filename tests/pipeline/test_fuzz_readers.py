"""A fuzzed front door (issue 25, point 6): every reader reads a mutated file or names it.

Hypothesis draws the mutations of :mod:`tests.pipeline.fuzzing` (truncations, flipped or
overwritten bytes, header fields changed with valid checksums, huge declared sizes,
edited HDF5 attributes and datasets) on a valid seed file per reader; each mutated file
must be read, or refused with the project's error naming it (the corrupt-frame path of
ingest), within a bounded allocation. The example count is small and derandomized for
CI (a few seconds per reader); ``benchmarks/fuzz.py`` is the long run.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pipeline.fuzzing import READERS, DrawChooser, mutate, try_read, write_seeds

EXAMPLES_PER_READER = 40


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    import pysteps.io.importers  # noqa: F401 - imported once, outside the traced reads

    folder = tmp_path_factory.mktemp("fuzz")
    return folder, write_seeds(folder)


@pytest.mark.parametrize("name", list(READERS))
def test_the_seed_file_reads(seeds, name):
    folder, _ = seeds
    reader = READERS[name]
    out = try_read(reader, folder / "seeds" / name / reader.file_name)
    assert (out.status, out.detail) == ("read", "")


@pytest.mark.filterwarnings("ignore:All-NaN slice encountered:RuntimeWarning")  # pysteps'
@pytest.mark.parametrize("name", list(READERS))
def test_mutated_files_are_read_or_named(seeds, name):
    folder, seed_bytes = seeds
    reader = READERS[name]
    counter = itertools.count()

    @settings(
        max_examples=EXAMPLES_PER_READER,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(data=st.data())
    def check(data):
        path = folder / name / str(next(counter)) / reader.file_name
        how = mutate(DrawChooser(data), reader, seed_bytes[name], path)
        out = try_read(reader, path)
        assert out.status in ("read", "named"), f"{name}, {how}: {out.detail}"

    check()


@pytest.mark.parametrize(
    ("name", "seed", "found"),
    [
        ("bom", 142, "netCDF-C aborted the process: _Netcdf4Dimid set to 2**40"),
        ("odim", 142, "RuntimeWarning from pipeline.geo: an infinite /where edge"),
        ("odim", 409, "RuntimeWarning from pipeline.geo: an infinite /where edge"),
        ("fmi", 711, "RuntimeWarning from pipeline.geo: infinite header corners"),
        ("hko7_png", 1000780, "1.76 GB allocated for an IDAT chunk length flipped"),
    ],
)
def test_inputs_the_benchmark_found_are_handled(seeds, name, seed, found, recwarn):
    """Replays of ``benchmarks/fuzz.py --replay NAME:SEED`` that once failed (*found*)."""
    from tests.pipeline.fuzzing import RandomChooser

    folder, seed_bytes = seeds
    reader = READERS[name]
    path = folder / "replay" / f"{name}-{seed}" / reader.file_name
    mutate(RandomChooser(seed), reader, seed_bytes[name], path)
    out = try_read(reader, path)
    assert out.status in ("read", "named") and out.peak_bytes < 64 * 2**20, out.detail
    assert [str(w.message) for w in recwarn] == []

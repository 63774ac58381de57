"""Shared fixtures of the whole test suite.

``tiny_archive`` is a small synthetic HKO-7 archive generated once per test session by
:func:`pipeline.synthetic.generate_archive` (real PNG frames and ``.mask`` files on disk):

* days 2015-06-01, 2015-06-02, 2015-06-03, 5 hours each (08:00-12:54, 50 nominal frames a
  day, 150 in all); seed 0;
* day lists: train = 2015-05-31 (listed, NO frames) + 2015-06-01, valid = 2015-06-02,
  test = 2015-06-03;
* per day: two single missing frames, one run of 3-5 missing frames and one frame written one
  minute off the 6-minute grid; 2015-06-01 has one frame without a mask file; 2015-06-03 has
  one truncated (corrupt) PNG.

``tiny_archive_info`` returns the :class:`pipeline.synthetic.SynthReport` with the exact
times (``times``, ``grid_times``, ``missing_times``, ``missing_runs``, ``offgrid_times``,
``corrupt_times``, ``no_mask_times``, ``readable_times``, ``splits``, ``empty_days``): assert
against it rather than hard-coding times. Treat the archive as read-only.

This file is also the test suite's entry point for the Prefect environment: flow modules
do not configure it when imported, so before any test imports Prefect, ``PREFECT_HOME``
points at a temporary directory (removed at exit; tests never write ``~/.prefect``) and
:func:`flows._prefect_env.configure` sets the offline-safe settings.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from flows._prefect_env import configure
from pipeline.synthetic import SynthReport, generate_archive

if "PREFECT_HOME" not in os.environ:
    _PREFECT_HOME = tempfile.mkdtemp(prefix="nowcast-test-prefect-")
    os.environ["PREFECT_HOME"] = _PREFECT_HOME
    atexit.register(shutil.rmtree, _PREFECT_HOME, True)
configure()

TINY_ARCHIVE_ARGS = dict(
    start="2015-06-01",
    days=3,
    seed=0,
    hours=5,
    first_hour=8,
    irregular=True,
    corrupt=True,
    empty_day=True,
    progress=False,
)
"""Arguments of :func:`generate_archive` behind ``tiny_archive``."""


@pytest.fixture(scope="session")
def tiny_archive_info(tmp_path_factory: pytest.TempPathFactory) -> SynthReport:
    """Report of the session's tiny synthetic archive (see the module docstring)."""
    root = tmp_path_factory.mktemp("tiny_hko7") / "archive"
    return generate_archive(root, **TINY_ARCHIVE_ARGS)


@pytest.fixture(scope="session")
def tiny_archive(tiny_archive_info: SynthReport) -> Path:
    """Root directory of the session's tiny synthetic HKO-7 archive (read-only)."""
    return tiny_archive_info.root

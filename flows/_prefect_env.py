"""Offline-safe Prefect settings, applied to ``os.environ`` before Prefect is imported.

Prefect reads its settings from the environment when it is first imported, so every
entry point calls :func:`configure` first and imports :mod:`prefect` (a flow module)
afterwards: each ``nowcast`` command that runs a flow (``flows._cli_*``, with the work
directory it was given), ``tests/conftest.py`` and ``benchmarks/demo.py``. Importing a
flow module configures nothing (no side effects at import): a script of your own that
runs a flow calls ``configure(workdir)`` before importing it, or Prefect uses its own
defaults (``~/.prefect``, telemetry on).

What is set (only where the user has not set it already, docs/facts.md section 9):

- ``PREFECT_SERVER_ANALYTICS_ENABLED=false`` and ``DO_NOT_TRACK=1``: telemetry tries to
  reach the internet.
- ``PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=120``: the temporary local server
  takes about 27 s to start with a fresh database, over Prefect's default of 20 s.
- ``PREFECT_HOME=<workdir>/.prefect``: Prefect keeps its SQLite database, profiles and
  results there. Without it Prefect writes ``~/.prefect``; with it nothing is written
  outside the directory the user named. When no work directory is given the fallback is
  ``<cwd>/.prefect``.

With an explicit work directory two other caches that would land in ``$HOME`` or the
system temporary directory move inside it too (again only where unset):
``MPLCONFIGDIR=<workdir>/.cache/matplotlib`` (matplotlib's font cache) and
``DASK_TEMPORARY_DIRECTORY=<workdir>/.cache/dask`` (dask workers' scratch space).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

_DEFAULTS: dict[str, str] = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # Results of flows and tasks are small; keep them in memory unless asked.
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
}


def configure(workdir: str | os.PathLike[str] | None = None) -> dict[str, str]:
    """Set offline-safe Prefect environment variables where they are not set yet.

    Parameters
    ----------
    workdir : path-like, optional
        Directory the user named for this job. ``PREFECT_HOME`` becomes
        ``<workdir>/.prefect`` unless ``PREFECT_HOME`` is already set. ``None`` means
        the current directory.

    Returns
    -------
    dict of str to str
        The Prefect-related variables as they are now in ``os.environ``.

    Notes
    -----
    Settings take effect only if :mod:`prefect` has not been imported yet in this
    process. When it has, and ``PREFECT_HOME`` would change, nothing is changed and
    the current value is kept (Prefect already holds its settings).
    """
    for key, value in _DEFAULTS.items():
        os.environ.setdefault(key, value)
    if "PREFECT_HOME" not in os.environ and "prefect" not in sys.modules:
        base = Path(workdir) if workdir is not None else Path.cwd()
        # not created here: Prefect makes it when (and only if) it needs it
        os.environ["PREFECT_HOME"] = str((base / ".prefect").resolve())
    if workdir is not None:
        cache = Path(workdir).resolve() / ".cache"
        if "matplotlib" not in sys.modules:
            os.environ.setdefault("MPLCONFIGDIR", str(cache / "matplotlib"))
        if "dask" not in sys.modules:
            os.environ.setdefault("DASK_TEMPORARY_DIRECTORY", str(cache / "dask"))
    keys = (*_DEFAULTS, "PREFECT_HOME", "PREFECT_API_URL", "MPLCONFIGDIR")
    return {k: os.environ[k] for k in keys if k in os.environ}

"""All-or-nothing changes to a published site and its forecast archive (used by :mod:`products.site`).

A publish changes several files of a site one after the other (the run directory,
``latest.json``, ``status.json``, ``scores.json``, ``data.js``, ``scores.png``) and then
commits the forecast to the archive (Icechunk). Each step is atomic, the sequence is
not: a kill in between would leave a site whose ``latest.json`` has moved on while
``data.js`` has not, or an archive that names a run the site rolled back.
:class:`SiteJournal` makes the sequence one recoverable step. It is entered while the
site's publish lock is held:

* on entry it first finishes what a dead predecessor left half done (a journal folder
  ``.journal-*`` still present under the lock belongs to a change that never finished,
  see below), then sets aside a corrupt ``status.json``, ``scores.json`` or
  ``latest.json`` (not JSON, or JSON of the wrong shape such as ``{"runs": "notalist"}``:
  renamed ``<name>.corrupt-<UTC time>``, logged and listed in :attr:`SiteJournal.set_aside`)
  so that the site's logs start afresh instead of failing every later publish, and
  removes the temporary files and folders of dead publishers (``.tmp-<pid>-*``,
  ``.<name>.tmp-<pid>-*`` such as ``.data.js.tmp-*``, ``runs/.old-*``);
* it then copies the site's index files into ``.journal-<pid>-<id>/`` and notes which run
  directories exist (the undo log);
* once every file of the site is written, :meth:`SiteJournal.mark_archive` records the
  archive commit about to be made (``archive.json``: the archive's location and the run
  directory whose ``forecast.nc`` is the forecast); the archive is committed after it;
* :meth:`SiteJournal.commit` (or a normal exit) deletes the journal; an exception restores
  the copies, removes run directories that were not there before and re-raises.

Why the archive comes last, with a redo record. An Icechunk commit cannot be taken
back by the site's undo log, but it can be repeated: writing an issue time that the
archive already holds replaces it in place (:func:`products.archive.append_forecast_zarr`).
So the site is changed first (undoable), the archive last (redoable), and the journal
says which of the two a dead publish needs: a journal without ``archive.json`` is rolled
back (the archive was not touched: site and archive still name the previous runs); a
journal with it is rolled forward (the site is complete; the run's ``forecast.nc`` is
committed to the archive again, a no-op in content if the dead publish's commit had
landed). Either way the site, ``latest.json``, ``data.js``, ``status.json`` and the
archive name the same runs afterwards, and a publish that fails before the archive step
(a bad ``status.json``, a full disk) commits nothing to the archive. Should the roll
forward itself fail (the archive refuses the forecast), the site is rolled back instead.

Republishing an issue time that is already in the site replaces its run directory before
the index files, so a failure in that case restores the index files but keeps the new
run directory. The stages and the choice are in docs/robustness.md.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd

__all__ = ["INDEX_FILES", "SiteJournal", "clean_stale_temporaries", "set_aside_corrupt"]

INDEX_FILES: tuple[str, ...] = (
    "latest.json",
    "status.json",
    "scores.json",
    "data.js",
    "scores.png",
)
"""Files of a site restored when a change fails."""

JSON_LOGS: tuple[str, ...] = ("status.json", "scores.json", "latest.json")
"""JSON files set aside (and started afresh) when they do not parse or have the wrong shape."""

_MANIFEST = "manifest.json"
_ARCHIVE = "archive.json"
_log = logging.getLogger(__name__)


def _list_of_entries(doc: dict, key: str) -> str | None:
    items = doc.get(key, [])
    if not isinstance(items, list):
        return f"{key!r} is a JSON {type(items).__name__}, not a list"
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("issue_time"), str):
            return f"{key}[{i}] is {json.dumps(item)[:40]}, not an entry with an issue_time"
    return None


def shape_problem(name: str, doc: Any) -> str | None:
    """What is wrong with the parsed contents *doc* of the site log *name*, or None.

    ``status.json`` is ``{"runs": [{"issue_time": str, ...}, ...]}``, ``scores.json``
    ``{"entries": [{"issue_time": str, ...}, ...], ...}`` and ``latest.json`` an object
    with a string ``run_id``.
    """
    if not isinstance(doc, dict):
        return f"a JSON {type(doc).__name__}, not an object"
    if name == "status.json":
        return _list_of_entries(doc, "runs")
    if name == "scores.json":
        return _list_of_entries(doc, "entries")
    if name == "latest.json" and not isinstance(doc.get("run_id"), str):
        return "an object without a string run_id"
    return None


def set_aside_corrupt(site: Path, names: tuple[str, ...] = JSON_LOGS) -> list[Path]:
    """Rename each of *names* in *site* that is not valid (:func:`shape_problem`) aside.

    The file becomes ``<name>.corrupt-<time>``.

    Parameters
    ----------
    site : pathlib.Path
        Site directory.
    names : tuple of str
        File names to check.

    Returns
    -------
    list of pathlib.Path
        The new names of the files set aside (each also logged as a warning).
    """
    moved = []
    for name in names:
        path = site / name
        try:
            doc = json.loads(path.read_bytes())
        except FileNotFoundError:
            continue
        except (json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
            problem = f"not valid JSON ({err})"
        else:
            problem = shape_problem(name, doc)
            if problem is None:
                continue
        stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S.%fZ")
        aside = path.with_name(f"{name}.corrupt-{stamp}")
        os.replace(path, aside)
        _log.warning("%s is %s: set aside as %s, started afresh", path, problem, aside.name)
        moved.append(aside)
    return moved


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pid_of(name: str, marker: str) -> int:
    """The process id after *marker* in a temporary name (``-1`` when there is none)."""
    rest = name.split(marker, 1)[1] if marker in name else ""
    head = rest.split("-", 1)[0]
    return int(head) if head.isdigit() else -1


def clean_stale_temporaries(site: Path) -> list[str]:
    """Remove the temporaries of dead publishers in *site*; their names.

    ``.tmp-<pid>-<id>/`` (a run being built), ``.<name>.tmp-<pid>-<hex>`` (an atomic
    write at the top of the site, e.g. ``.data.js.tmp-*``), and
    ``runs/.old-*`` (a replaced run directory). A temporary of a live process is kept
    (the caller holds the publish lock, so only a reader could own one).
    """
    removed = []
    candidates = [(p, ".tmp-") for p in site.glob(".tmp-*")]
    candidates += [(p, ".tmp-") for p in site.glob(".*.tmp-*") if p.is_file()]
    for path, marker in candidates:
        pid = _pid_of(path.name, marker)
        if pid != os.getpid() and (pid < 0 or not _pid_alive(pid)):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path.name)
    runs = site / "runs"
    if runs.is_dir():
        for old in runs.glob(".old-*"):
            shutil.rmtree(old, ignore_errors=True)
            removed.append(f"runs/{old.name}")
    if removed:
        _log.info("removed temporaries of dead publishes in %s: %s", site, ", ".join(removed))
    return removed


def _run_names(site: Path) -> list[str]:
    runs = site / "runs"
    if not runs.is_dir():
        return []
    return sorted(p.name for p in runs.iterdir() if not p.name.startswith("."))


def _restore(site: Path, journal: Path) -> None:
    """Put back the files saved in *journal* and drop run directories made since."""
    try:
        manifest = json.loads((journal / _MANIFEST).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return  # the snapshot never completed: nothing had been changed yet
    for name, present in manifest["files"].items():
        if present:
            if (journal / name).exists():  # else: already put back by an interrupted restore
                os.replace(journal / name, site / name)
        else:
            (site / name).unlink(missing_ok=True)
    before = set(manifest["runs"])
    for name in _run_names(site):
        if name not in before:
            shutil.rmtree(site / "runs" / name, ignore_errors=True)


def _roll_forward(site: Path, intent: dict[str, str]) -> None:
    """Commit the run of *intent* to its archive again (the site is complete)."""
    from products.archive import append_forecast_zarr
    from products.cf import open_forecast_netcdf

    forecast = open_forecast_netcdf(site / intent["run"] / "forecast.nc")
    try:
        append_forecast_zarr(forecast, intent["archive"])
    finally:
        forecast.close()


def _recover(site: Path, journal: Path) -> str:
    """Finish the dead change of *journal*: ``"rolled forward"`` or ``"rolled back"``."""
    try:
        intent = json.loads((journal / _ARCHIVE).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        intent = None
    if intent is not None:
        try:
            _roll_forward(site, intent)
            return "rolled forward"
        except Exception as err:  # noqa: BLE001 - the archive refuses it: undo the site
            _log.warning(
                "could not commit %s to the archive %s again (%s): site rolled back",
                intent["run"],
                intent["archive"],
                err,
            )
    _restore(site, journal)
    return "rolled back"


class SiteJournal:
    """Undo log of one change to a site; use as ``with lock, SiteJournal(site) as journal``.

    Parameters
    ----------
    site : path-like
        Site directory (must exist; the caller holds its publish lock).

    Attributes
    ----------
    set_aside : list of pathlib.Path
        Corrupt JSON files renamed on entry.
    recovered : list of str
        Journals of dead predecessors finished on entry, as ``"<name>: rolled back"``
        or ``"<name>: rolled forward"``.
    removed : list of str
        Temporaries of dead publishers removed on entry.
    """

    def __init__(self, site: str | os.PathLike[str]) -> None:
        self.site = Path(site)
        self.set_aside: list[Path] = []
        self.recovered: list[str] = []
        self.removed: list[str] = []
        self._dir: Path | None = None
        self._archived = False

    def __enter__(self) -> SiteJournal:
        for old in sorted(self.site.glob(".journal-*")):
            how = _recover(self.site, old)
            shutil.rmtree(old, ignore_errors=True)
            self.recovered.append(f"{old.name}: {how}")
            _log.warning("%s the unfinished site change %s", how, old.name)
        self.set_aside = set_aside_corrupt(self.site)
        self.removed = clean_stale_temporaries(self.site)
        path = self.site / f".journal-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        path.mkdir()
        files = {}
        for name in INDEX_FILES:
            src = self.site / name
            files[name] = src.is_file()
            if files[name]:
                shutil.copy2(src, path / name)
        manifest = {"files": files, "runs": _run_names(self.site)}
        _write_durably(path / _MANIFEST, manifest)  # the snapshot counts only once complete
        self._dir = path
        return self

    def mark_archive(self, archive: str, run: str) -> None:
        """Record that the site is complete and *run* is about to be committed to *archive*.

        From here on a kill is rolled forward, not back (module docstring).

        Parameters
        ----------
        archive : str
            The archive's location (absolute directory or ``s3://`` URL).
        run : str
            The run directory relative to the site (``runs/<run id>``).
        """
        if self._dir is None:
            raise RuntimeError("mark_archive outside an open site journal")
        _write_durably(self._dir / _ARCHIVE, {"archive": archive, "run": run})

    def archived(self) -> None:
        """Note that the archive commit of :meth:`mark_archive` landed: the change now stays,
        even if what follows raises."""
        self._archived = True

    def commit(self) -> None:
        """Keep the change: delete the journal (idempotent)."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._dir is not None and exc_type is not None:
            if self._archived:  # the archive has the run: keep the site that names it
                _log.warning("site change failed (%s) after its archive commit: kept", exc_type)
            else:  # failed before or inside the archive step: nothing committed, undo the site
                _restore(self.site, self._dir)
                _log.warning("site change failed (%s): previous site restored", exc_type.__name__)
        self.commit()


def _write_durably(path: Path, doc: dict[str, Any]) -> None:
    """Write *doc* as JSON to a temporary beside *path*, fsync it, rename it into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as fh:
        json.dump(doc, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)

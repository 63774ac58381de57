"""All-or-nothing changes to a published site (used by :mod:`products.site`).

A publish changes several files of a site one after the other (the run directory,
``latest.json``, ``status.json``, ``scores.json``, ``data.js``, ``scores.png``). Each
write is atomic, the sequence is not: a failure or a kill in between would leave a site
whose ``latest.json`` has moved on while ``data.js`` has not. :class:`SiteJournal` is an
undo log around the sequence, entered while the site's publish lock is held:

* on entry it first rolls back what a dead predecessor left half done (a journal folder
  ``.journal-*`` still present under the lock belongs to a change that never finished),
  then sets aside a corrupt ``status.json``, ``scores.json`` or ``latest.json``
  (renamed ``<name>.corrupt-<UTC time>``, logged and listed in :attr:`SiteJournal.set_aside`)
  so that the site's logs start afresh instead of failing every later publish;
* it then copies the site's index files into ``.journal-<pid>-<id>/`` and notes which run
  directories exist;
* :meth:`SiteJournal.commit` (or a normal exit) deletes the journal; an exception restores
  the copies, removes run directories that were not there before and re-raises.

A site therefore shows either the previous publish or the new one. Republishing an issue
time that is already in the site replaces its run directory before the index files, so a
failure in that case restores the index files but keeps the new run directory.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from types import TracebackType

import pandas as pd

__all__ = ["INDEX_FILES", "SiteJournal", "set_aside_corrupt"]

INDEX_FILES: tuple[str, ...] = (
    "latest.json",
    "status.json",
    "scores.json",
    "data.js",
    "scores.png",
)
"""Files of a site restored when a change fails."""

JSON_LOGS: tuple[str, ...] = ("status.json", "scores.json", "latest.json")
"""JSON files set aside (and started afresh) when they do not parse."""

_MANIFEST = "manifest.json"
_log = logging.getLogger(__name__)


def set_aside_corrupt(site: Path, names: tuple[str, ...] = JSON_LOGS) -> list[Path]:
    """Rename each of *names* in *site* that is not a JSON object to ``<name>.corrupt-<time>``.

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
            if isinstance(doc, dict):
                continue
            problem = f"a JSON {type(doc).__name__}, not an object"
        stamp = pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S.%fZ")
        aside = path.with_name(f"{name}.corrupt-{stamp}")
        os.replace(path, aside)
        _log.warning("%s is %s: set aside as %s, started afresh", path, problem, aside.name)
        moved.append(aside)
    return moved


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
        Journals of dead predecessors rolled back on entry.
    """

    def __init__(self, site: str | os.PathLike[str]) -> None:
        self.site = Path(site)
        self.set_aside: list[Path] = []
        self.recovered: list[str] = []
        self._dir: Path | None = None

    def __enter__(self) -> SiteJournal:
        for old in sorted(self.site.glob(".journal-*")):
            _restore(self.site, old)
            shutil.rmtree(old, ignore_errors=True)
            self.recovered.append(old.name)
            _log.warning("rolled back the unfinished site change %s", old.name)
        self.set_aside = set_aside_corrupt(self.site)
        path = self.site / f".journal-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        path.mkdir()
        files = {}
        for name in INDEX_FILES:
            src = self.site / name
            files[name] = src.is_file()
            if files[name]:
                shutil.copy2(src, path / name)
        manifest = {"files": files, "runs": _run_names(self.site)}
        tmp = path / f".{_MANIFEST}.tmp"
        tmp.write_text(json.dumps(manifest))
        os.replace(tmp, path / _MANIFEST)  # the snapshot counts only once complete
        self._dir = path
        return self

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
            _restore(self.site, self._dir)
            _log.warning("site change failed (%s): previous site restored", exc_type.__name__)
        self.commit()

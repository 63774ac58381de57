"""Static operator dashboard: a page regenerated from the site's JSON files.

The site directory written by :func:`products.site.publish_run` holds::

    index.html app.js style.css   static template (copied from this package)
    data.js                       window.NOWCAST_DATA = {latest, status, scores,
                                  verification, generated}
    scores.png                    rolling CSI per lead time (matplotlib)
    latest.json status.json scores.json
    runs/<YYYYmmddTHHMMZ>/        forecast.nc, maps/*.png, loop.gif, run.json

Data reach the page through the generated ``data.js`` script rather than a ``fetch``
of ``latest.json``: a script tag also works when ``index.html`` is opened from
``file://`` (where Chromium refuses ``fetch``), and the page re-loads ``data.js``
every 60 s so an open page follows new runs when served over http
(``nowcast dashboard SITE --serve``, bound to 127.0.0.1, serving only the published
files: no directory listings, no lock or temporary files). Every generated file is
written to a temporary name and moved into place with ``os.replace``
(:mod:`pipeline.atomic`), so a reader sees the old or the new version, never a
half-written one.

No server-side code, no external CDN: the page is plain HTML, CSS and JavaScript.
"""

from __future__ import annotations

import functools
import json
import os
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.atomic import atomic_write_bytes
from products._common import _read_json

STATIC_FILES: tuple[str, ...] = ("index.html", "app.js", "style.css")
"""Template files copied into every site."""

_TEMPLATE_DIR = Path(__file__).resolve().parent


def _copy_static(site: Path) -> None:
    for name in STATIC_FILES:
        src = (_TEMPLATE_DIR / name).read_bytes()
        dst = site / name
        if not dst.exists() or dst.read_bytes() != src:
            atomic_write_bytes(dst, src)


def scores_chart_title(n_forecasts: int) -> str:
    """Title of ``scores.png``.

    >>> scores_chart_title(1), scores_chart_title(12)
    ('Rolling CSI, 1 verified forecast', 'Rolling CSI, last 12 verified forecasts')
    """
    n = int(n_forecasts)
    return "Rolling CSI, " + ("1 verified forecast" if n == 1 else f"last {n} verified forecasts")


def render_scores_png(scores: dict[str, Any] | None, path: str | os.PathLike[str]) -> Path | None:
    """Line chart of the rolling mean CSI per lead time, one line per threshold.

    Parameters
    ----------
    scores : dict or None
        Contents of ``scores.json`` (``rolling`` with ``lead_time``,
        ``thresholds_mmh``, ``csi_mean``).
    path : path-like
        PNG to write (atomically).

    Returns
    -------
    pathlib.Path or None
        *path*, or None when there are no scores yet (nothing written).
    """
    rolling = (scores or {}).get("rolling") or {}
    if not rolling.get("csi_mean"):
        return None
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    leads = rolling["lead_time"]
    for thr, row in zip(rolling["thresholds_mmh"], rolling["csi_mean"], strict=True):
        values = [float("nan") if v is None else v for v in row]
        ax.plot(leads, values, marker="o", markersize=3, label=f">= {thr:g} mm/h")
    ax.set_xlabel("lead time (min)")
    ax.set_ylabel("CSI")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.set_title(scores_chart_title(int(rolling["n_forecasts"])), fontsize=9)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, buf.getvalue())


def verification_schedule(
    latest: dict[str, Any] | None, status: dict[str, Any] | None, scores: dict[str, Any] | None
) -> dict[str, Any] | None:
    """When the next forecast will be verified, for the dashboard's verification panel.

    A forecast is verified (:func:`products.cycle.verify_earlier`, run by the forecast
    cycles of ``nowcast serve`` / ``replay`` / ``flow``) at the first cycle at or after
    its last valid time, once the observations of all its leads have arrived. The next
    one is the oldest ``ok`` run of ``status.json`` issued after the newest verified
    forecast of ``scores.json`` (the served run when there is none).

    Parameters
    ----------
    latest, status, scores : dict or None
        Contents of ``latest.json``, ``status.json`` and ``scores.json``.

    Returns
    -------
    dict or None
        ``last_lead_min`` (int, the served run's last lead), ``next_issue_time`` and
        ``next_verified_from`` (ISO UTC: issue time plus the last lead); None before the
        first run.
    """
    manifest = (latest or {}).get("manifest") or {}
    leads = [int(f["lead_time"]) for f in manifest.get("frames", []) if f["kind"] == "forecast"]
    if not leads:
        return None
    done = sorted(e["issue_time"] for e in (scores or {}).get("entries", []))
    waiting = sorted(
        r["issue_time"]
        for r in (status or {}).get("runs", [])
        if r.get("status") == "ok" and (not done or r["issue_time"] > done[-1])
    )
    issue = waiting[0] if waiting else manifest["issue_time"]
    when = pd.Timestamp(issue) + pd.Timedelta(minutes=max(leads))
    return {
        "last_lead_min": max(leads),
        "next_issue_time": issue,
        "next_verified_from": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def render_site(site_dir: str | os.PathLike[str]) -> Path:
    """(Re)generate the dashboard of a site from its JSON files.

    Copies the static template, draws ``scores.png`` and writes ``data.js`` (all
    atomically). Safe to run at any time, e.g. by ``nowcast dashboard SITE``.

    Parameters
    ----------
    site_dir : path-like
        Existing site directory.

    Returns
    -------
    pathlib.Path
        ``<site_dir>/index.html``.

    Raises
    ------
    ValueError
        If *site_dir* is not a directory or one of its JSON files is corrupt.
    """
    site = Path(site_dir)
    if not site.is_dir():
        raise ValueError(f"site directory {site} does not exist; publish a run first")
    _copy_static(site)
    latest = _read_json(site / "latest.json")
    status = _read_json(site / "status.json") or {"runs": []}
    scores = _read_json(site / "scores.json")
    chart = render_scores_png(scores, site / "scores.png")
    data = {
        "generated": pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ"),
        "latest": latest,
        "status": status,
        "scores": (scores or {}).get("rolling") or None,
        "scores_chart": "scores.png" if chart is not None else None,
        "verification": verification_schedule(latest, status, scores),
    }
    payload = json.dumps(data, indent=1, allow_nan=False, default=str)
    atomic_write_bytes(site / "data.js", f"window.NOWCAST_DATA = {payload};\n".encode())
    return site / "index.html"


PUBLISHED_FILES: tuple[str, ...] = (
    *STATIC_FILES,
    "data.js",
    "scores.png",
    "latest.json",
    "status.json",
    "scores.json",
)
"""Top-level files of a site that the server serves (plus the files inside ``runs/<id>/``)."""


def is_published(url_path: str) -> bool:
    """Whether the server may serve *url_path* (``/``, a published file or a run's file).

    Hidden names (``.publish.lock``, ``.tmp-*``, ``.journal-*``), the forecast archive,
    set-aside logs, anything else at the top level and every directory but ``/`` are not.
    """
    from urllib.parse import unquote, urlsplit

    parts = [p for p in unquote(urlsplit(url_path).path).split("/") if p]
    if any(p.startswith(".") or "\\" in p for p in parts):
        return False
    if not parts:
        return True
    if len(parts) == 1:
        return parts[0] in PUBLISHED_FILES
    return parts[0] == "runs" and len(parts) >= 3


class _Handler(SimpleHTTPRequestHandler):
    """Published files only (:func:`is_published`), no listings, no caching of the data."""

    def send_head(self):
        """Answer 404 for anything not published or leading outside the site."""
        site = os.path.realpath(self.directory)
        target = os.path.realpath(self.translate_path(self.path))
        inside = target == site or target.startswith(site + os.sep)
        if not (is_published(self.path) and inside):
            self.send_error(404, "Not a published file")
            return None
        return super().send_head()

    def list_directory(self, path):
        """No directory listings: 404."""
        self.send_error(404, "No directory listings")
        return None

    def end_headers(self) -> None:
        if self.path.split("?")[0].endswith((".js", ".json", ".html", "/")):
            self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


def make_server(
    site_dir: str | os.PathLike[str], port: int = 8765, host: str = "127.0.0.1"
) -> ThreadingHTTPServer:
    """HTTP server for the site (not started): ``server.serve_forever()`` to run it.

    Parameters
    ----------
    site_dir : path-like
        Site directory to serve (nothing outside it is served).
    port : int
        TCP port; 0 picks a free one (read it back from ``server.server_address``).
    host : str
        Interface to bind; the default serves this machine only.
    """
    site = Path(site_dir)
    if not (site / "index.html").is_file():
        raise ValueError(f"{site} has no index.html; run `nowcast dashboard {site}` first")
    handler = functools.partial(_Handler, directory=str(site))
    return ThreadingHTTPServer((host, int(port)), handler)

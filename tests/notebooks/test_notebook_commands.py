"""The commands ``notebooks/README.md`` tells an analyst to run, run as written.

* ``make notebooks``: the Makefile's recipe (jupytext to ``.ipynb``, then ``jupyter nbconvert
  --execute --to html``) on a copy of the repository layout holding one notebook and a
  ``demo-run/`` whose resampled store is the tiny archive's; the notebook runs with its own
  defaults (``../demo-run/radar80.zarr``) and the HTML must show the HKO-7 clip counts
  recomputed here. The set-up step (``pip install '.[dev,notebooks]'``) is skipped with
  ``make -o``: the test runs in the environment that set-up made.
* ``make notebooks`` with a notebook whose check fails first: the target renders the others,
  shows the failure in that notebook's page, names it at the end and exits non-zero.
* ``jupyter lab notebooks/``: a JupyterLab server started on a copy of ``notebooks/`` serves
  each ``.py`` source as a notebook (jupytext's contents manager), parameters cell included.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from pipeline.store import open_store
from tests.notebooks.conftest import NotebookStores, sequent_starts

REPO = Path(__file__).resolve().parents[2]
NB_DIR = REPO / "notebooks"
VENV = Path(sys.prefix)
BIN = VENV / "bin"


def _jupyter_env(tmp_path: Path) -> dict[str, str]:
    """This environment, with Jupyter's per-user state kept under *tmp_path*."""
    env = dict(os.environ)
    for var, sub in (
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("JUPYTER_CONFIG_DIR", "config"),
        ("IPYTHONDIR", "ipython"),
    ):
        env[var] = str(tmp_path / "jupyter" / sub)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), env.get("PYTHONPATH", "")) if p
    )  # the kernel imports this checkout's pipeline / nowcast / flows
    return env


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_notebooks_executes_a_notebook_to_html(
    notebook_stores: NotebookStores, tmp_path: Path
) -> None:
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(NB_DIR / "02_sampling_schemes.py", root / "notebooks")
    (root / "demo-run").mkdir()
    (root / "demo-run" / "radar80.zarr").symlink_to(notebook_stores.resampled)
    proc = subprocess.run(
        [
            "make",
            "-f",
            str(REPO / "Makefile"),
            "-o",
            str(BIN / ".installed"),  # set-up already done: this environment
            "notebooks",
            f"VENV={VENV}",
            "NOTEBOOK_HTML=html",
        ],
        cwd=root,
        env=_jupyter_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert (root / "notebooks" / "02_sampling_schemes.ipynb").is_file()
    page = html.unescape((root / "html" / "02_sampling_schemes.html").read_text(encoding="utf-8"))
    # the notebook's defaults: HKO-7 clips of 5 + 20 frames, stride 5, on every day of the store
    observed = open_store(notebook_stores.resampled)["observed"].to_series()
    starts = pd.DatetimeIndex(sequent_starts(observed, seq_len=25, stride=5))
    days = observed.index.normalize().unique()
    per_day = ", ".join(f"{d:%Y-%m-%d} {int((starts.normalize() == d).sum())}" for d in days)
    expected = f"{len(starts)} HKO-7 clips (5+20, stride 5) on {len(days)} days: {per_day}"
    assert len(starts) > 0
    assert expected in page
    assert "Traceback" not in page


_FAILING_NOTEBOOK = """# %% [markdown]
# # 00 A notebook whose check fails

# %% tags=["parameters"]
LIMIT = 1e-4

# %%
measured = 1.14e-4
assert measured < LIMIT, f"measured {measured:.2e} against a limit of {LIMIT:g}"
"""


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_notebooks_renders_the_rest_when_one_fails_and_names_it(
    notebook_stores: NotebookStores, tmp_path: Path
) -> None:
    """Issue 24, 2: one notebook's failed check no longer stops the target."""
    root = tmp_path / "repo"
    (root / "notebooks").mkdir(parents=True)
    (root / "notebooks" / "00_failing.py").write_text(_FAILING_NOTEBOOK, encoding="utf-8")
    shutil.copy(NB_DIR / "02_sampling_schemes.py", root / "notebooks")
    (root / "demo-run").mkdir()
    (root / "demo-run" / "radar80.zarr").symlink_to(notebook_stores.resampled)
    proc = subprocess.run(
        ["make", "-f", str(REPO / "Makefile"), "-o", str(BIN / ".installed"), "notebooks"]
        + [f"VENV={VENV}", "NOTEBOOK_HTML=html"],
        cwd=root,
        env=_jupyter_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert (
        "make notebooks: FAILED: notebooks/00_failing.ipynb (their pages in html show the errors)"
        in proc.stdout
    )
    # the notebook after the failing one is rendered, and the failing one shows its error
    good = html.unescape((root / "html" / "02_sampling_schemes.html").read_text(encoding="utf-8"))
    assert "HKO-7 clips (5+20, stride 5)" in good and "Traceback" not in good
    bad = html.unescape((root / "html" / "00_failing.html").read_text(encoding="utf-8"))
    assert "AssertionError" in bad and "measured 1.14e-04 against a limit of 0.0001" in bad


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str, token: str, deadline: float, proc: subprocess.Popen) -> dict:
    request = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    while True:
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, ConnectionError):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_jupyter_lab_opens_the_sources_as_notebooks(tmp_path: Path) -> None:
    root = tmp_path / "notebooks"
    root.mkdir()
    for src in NB_DIR.glob("0*.py"):
        shutil.copy(src, root)
    port, token = _free_port(), "notebook-test-token"
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(
        [
            str(BIN / "jupyter"),
            "lab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            *(["--allow-root"] if os.geteuid() == 0 else []),  # CI containers run as root
        ],
        env=_jupyter_env(tmp_path),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        base = f"http://127.0.0.1:{port}"
        lab = _get_json(f"{base}/lab/api/settings", token, deadline, proc)
        assert any(s["id"].startswith("jupyterlab-jupytext") for s in lab["settings"])
        for src in sorted(root.glob("0*.py")):
            model = _get_json(
                f"{base}/api/contents/{src.name}?type=notebook&content=1", token, deadline, proc
            )
            assert model["type"] == "notebook", src.name
            cells = model["content"]["cells"]
            assert cells[1]["metadata"]["tags"] == ["parameters"], src.name
            assert re.search(r'^\w+ = "\.\./demo-run/', "".join(cells[1]["source"]), re.M)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert not list(root.glob("*.ipynb"))  # opening a source writes no .ipynb beside it

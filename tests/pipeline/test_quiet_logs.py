"""Quiet logs: pysteps imports without printing, progress in a log is plain lines."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.console.progress import LineProgress, log_interval_s, progress_bar

ROOT = Path(__file__).resolve().parents[2]

_IMPORTS = "import nowcast.baselines, pipeline.motion; from pysteps import motion, nowcasts"


def _python(code: str, cwd: Path, home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYSTEPSRC"}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True
    )


def test_pysteps_imports_silently_through_our_packages(tmp_path):
    done = _python(
        _IMPORTS + "; import pysteps; print(pysteps.rcparams.silent_import)", tmp_path, tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "True\n"  # nothing but our own print
    assert "Pysteps configuration file" not in done.stderr


def test_a_users_own_pysteps_configuration_is_respected(tmp_path):
    rc = tmp_path / ".pysteps" / "pystepsrc"
    rc.parent.mkdir()
    bundled = _python(
        "import pysteps, sys; sys.stdout.write(pysteps.config_fname())", tmp_path, tmp_path / "none"
    )
    rc.write_text(Path(bundled.stdout.splitlines()[-1]).read_text())  # silent_import false
    done = _python(_IMPORTS, tmp_path, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"Pysteps configuration file found at: {rc}\n\n"


def test_progress_in_a_log_is_plain_lines():
    log = io.StringIO()  # not a terminal
    with progress_bar(total=4, desc="ingest", unit="frame", file=log, mininterval=0) as bar:
        assert isinstance(bar, LineProgress)
        for _ in range(4):
            bar.update()
        bar.set_postfix(skipped=1)
    text = log.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert lines[0] == "ingest:   0% 0/4 [00:00<?, ?frame/s]"
    assert [line.split(" [")[0] for line in lines[1:5]] == [
        f"ingest: {p:3d}% {n}/4" for p, n in ((25, 1), (50, 2), (75, 3), (100, 4))
    ]
    assert lines[-1].startswith("ingest: 100% 4/4 [") and lines[-1].endswith(", skipped=1]")
    assert text.endswith("]\n")


def test_progress_in_a_log_is_periodic(monkeypatch):
    """With the default interval (10 s), 1000 fast updates write 2 lines: start and end."""
    log = io.StringIO()
    bar = progress_bar(total=1000, desc="maps", file=log, leave=False)
    for _ in range(1000):
        bar.update()
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("maps:   0% 0/1000") and lines[1].startswith("maps: 100% 1000/1000")
    monkeypatch.setenv("NOWCAST_PROGRESS_SECONDS", "2.5")
    assert log_interval_s() == 2.5
    monkeypatch.setenv("NOWCAST_PROGRESS_SECONDS", "often")
    with pytest.raises(ValueError, match="NOWCAST_PROGRESS_SECONDS='often' is not a number"):
        log_interval_s()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_on_a_terminal_is_a_redrawn_bar():
    term = _Terminal()
    with progress_bar(total=2, desc="ingest", file=term, mininterval=0) as bar:
        assert not isinstance(bar, LineProgress)
        bar.update(2)
    assert "\r" in term.getvalue()


def test_synthetic_archive_progress_in_a_log_has_no_carriage_returns(tmp_path, capsys):
    from pipeline.synthetic import generate_archive

    generate_archive(tmp_path / "a", days=1, hours=1, progress=True, irregular=False, corrupt=False)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert err.splitlines()[-1].startswith("synthetic archive: 100% 10/10 [")


def test_ingest_command_progress_in_a_log_has_no_carriage_returns(tmp_path):
    from flows.cli import app
    from pipeline.synthetic import generate_archive

    generate_archive(
        tmp_path / "a", days=1, hours=1, progress=False, irregular=False, corrupt=False
    )
    result = CliRunner().invoke(app, ["ingest", str(tmp_path / "a"), str(tmp_path / "s.zarr")])
    assert result.exit_code == 0, result.output
    assert "\r" not in result.output
    assert "ingest: 100% " in result.output

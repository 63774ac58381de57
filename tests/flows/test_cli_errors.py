"""User errors of the ``nowcast`` commands: one line, exit code 2, a traceback only with --debug."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from flows._cli_errors import describe_error, hoist_debug
from flows.cli import app
from tests.flows.test_schedule import _small_store


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    """40 x 40 store, 8 frames every 6 min from 2015-06-01 12:00 (12:00 .. 12:42)."""
    return _small_store(tmp_path_factory.mktemp("cli_errors") / "s.zarr")


def _invoke(args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "300"})


def _assert_one_line_error(result, expected: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: ")
    assert expected in lines[0]


def test_forecast_unknown_baseline(tmp_path):
    res = _invoke(
        ["forecast", "--store", tmp_path / "s.zarr", "--baseline", "foo"]
        + ["--out", tmp_path / "x.nc"]
    )
    _assert_one_line_error(res, "unknown baseline 'foo'; valid names: persistence, pysteps, sprog")


def test_forecast_missing_store(tmp_path):
    res = _invoke(
        ["forecast", "--store", tmp_path / "none.zarr", "--baseline", "persistence"]
        + ["--out", tmp_path / "x.nc"]
    )
    _assert_one_line_error(res, f"radar store {tmp_path / 'none.zarr'} does not exist")


def test_forecast_missing_run(tmp_path, small_store):
    res = _invoke(
        ["forecast", "--store", small_store, "--run", tmp_path / "norun"]
        + ["--out", tmp_path / "x.nc"]
    )
    expected = f"--run {tmp_path / 'norun'} does not exist (expected an existing directory)"
    _assert_one_line_error(res, expected)
    (tmp_path / "norun").mkdir()
    res = _invoke(
        ["forecast", "--store", small_store, "--run", tmp_path / "norun"]
        + ["--out", tmp_path / "x.nc"]
    )
    _assert_one_line_error(res, f"no checkpoint 'best.pt' in run directory {tmp_path / 'norun'}")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--issue-time", "garbage"], "--issue-time 'garbage' is not a time; expected YYYY-MM-DD"),
        (["--leads=-6,0"], "--leads must be positive minutes like 6,12,18; got '-6,0'"),
        (["--leads=a"], "--leads must be integers like 6,12,18; got 'a'"),
        (["--issue-time", "2020-01-01"], "cannot forecast at 2020-01-01 00:00:00: no input frame"),
        (["--percentiles", "50"], "--percentiles and --keep-members need --members N"),
        (["--keep-members"], "--percentiles and --keep-members need --members N"),
        (["--members", "0"], "--members must be >= 1, got 0"),
        (
            ["--members", "2", "--probability", "isotonic"],
            "--probability must be one of debiased, fraction; got 'isotonic'",
        ),
        (["--calibration", "cal.nc"], "--calibration needs --members N"),
        (["--members", "2", "--calibration", "nowhere.nc"], "--calibration: no file nowhere.nc"),
        (
            ["--members", "2", "--percentiles", "50,101"],
            "--percentiles: percentiles must be numbers in 0..100 like 10,50,90; got [50.0, 101.0]",
        ),
    ],
)
def test_forecast_bad_time_or_leads(tmp_path, small_store, extra, expected):
    out = tmp_path / "x.nc"
    res = _invoke(
        ["forecast", "--store", small_store, "--baseline", "persistence", "--out", out] + extra
    )
    _assert_one_line_error(res, expected)
    assert not out.exists()


def test_forecast_usage_errors_are_one_line(tmp_path):
    both = _invoke(["forecast", "--store", tmp_path, "--out", tmp_path / "x.nc"])
    _assert_one_line_error(both, "give exactly one of --run RUN_DIR and --baseline NAME")
    missing = _invoke(["forecast", "--out", tmp_path / "x.nc"])
    _assert_one_line_error(missing, "Missing option '--store'. (see: nowcast forecast --help)")


def test_publish_bad_inputs(tmp_path, small_store):
    site = tmp_path / "site"
    missing = _invoke(["publish", tmp_path / "none.nc", "--store", small_store, "--site", site])
    _assert_one_line_error(missing, f"forecast file {tmp_path / 'none.nc'} does not exist")
    bad = tmp_path / "bad.nc"
    bad.write_text("not a netcdf file\n")
    res = _invoke(["publish", bad, "--store", small_store, "--site", site])
    _assert_one_line_error(res, f"forecast file {bad} is not a NetCDF forecast")
    site_file = tmp_path / "site_file"
    site_file.write_text("")
    res = _invoke(["publish", bad, "--store", small_store, "--site", site_file])
    _assert_one_line_error(res, f"site {site_file} is a file; expected a site directory")
    assert not site.exists()


def test_debug_shows_the_exception_anywhere_on_the_line(tmp_path):
    args = ["forecast", "--store", tmp_path / "s.zarr", "--baseline", "foo"]
    args += ["--out", tmp_path / "x.nc"]
    after = _invoke([*args, "--debug"])
    assert after.exit_code == 1
    assert isinstance(after.exception, ValueError)
    assert "unknown baseline 'foo'" in str(after.exception)
    before = _invoke(["--debug", *args])
    assert isinstance(before.exception, ValueError)


def test_hoist_debug_and_describe_error():
    assert hoist_debug(["forecast", "--x", "1", "--debug"]) == ["--debug", "forecast", "--x", "1"]
    assert hoist_debug(["forecast", "--", "--debug"]) == ["forecast", "--", "--debug"]
    assert hoist_debug(["forecast"]) == ["forecast"]
    err = FileExistsError(17, "File exists", "/tmp/site")
    assert describe_error(err) == "/tmp/site: File exists"
    assert describe_error(ValueError("two\n  lines")) == "two lines"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["flow", "publish", "{t}/none.nc", "--store", "{t}", "--site", "{t}/site"],
            "forecast file {t}/none.nc does not exist (expected an existing file)",
        ),
        (
            [
                "flow",
                "forecast",
                "--store",
                "{t}/none.zarr",
                "--site",
                "{t}/site",
                "--baseline",
                "persistence",
            ],
            "--store {t}/none.zarr does not exist (expected an existing directory)",
        ),
        (
            ["flow", "ingest", "{t}/noarch", "{t}/s.zarr"],
            "archive {t}/noarch does not exist (expected an existing directory)",
        ),
        (
            ["replay", "{t}", "{t}/s.zarr", "--start", "bad"],
            "--start 'bad' is not a time; expected YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)",
        ),
        (
            ["resample", "{t}/none.zarr", "{t}/out.zarr"],
            "source store {t}/none.zarr does not exist",
        ),
        (
            ["train", "--model", "foo", "--data", "{t}/none.zarr", "--out", "{t}/r"],
            "unknown model 'foo'; valid names: convgru, trajgru,",
        ),
        (
            ["evaluate", "--baselines", "persistence", "--data", "{t}/none.zarr", "--out", "{t}/e"],
            "store {t}/none.zarr does not exist",
        ),
        (
            ["evaluate", "--data", "{t}/none.zarr"],
            "give --run RUN_DIR, or --baselines NAMES to score alone",
        ),
        (
            ["evaluate", "--baselines", "steps", "--data", "{t}", "--out", "{t}/e"]
            + ["--members", "2", "--probability", "k/n"],
            "--probability must be one of debiased, fraction; got 'k/n'",
        ),
        (
            ["flow", "evaluate", "--data", "{t}/none.zarr", "--baselines", "persistence"],
            "scoring the baselines alone (no --run) needs --out DIR",
        ),
        (
            ["train", "--model", "convgru", "--data", "{t}", "--out", "{t}/r"]
            + ["--split-fractions", "0.5,0.5"],
            "--split-fractions must be 3 comma-separated numbers, got '0.5,0.5'",
        ),
        (
            ["flow", "train", "--model", "convgru", "--data", "{t}", "--out", "{t}/r"]
            + ["--split-fractions", "a,b,c"],
            "--split-fractions must be comma-separated numbers, got 'a,b,c'",
        ),
        (
            ["ingest", "{t}", "{t}/s.zarr", "--start", "garbage"],
            "--start 'garbage' is not a time; expected YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)",
        ),
        (  # day-first or month-first: refused, never guessed (issue 24, 8)
            ["ingest", "{t}", "{t}/s.zarr", "--start", "26/08/2010"],
            "--start '26/08/2010' is not a time; expected YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC), "
            "e.g. 2010-08-26 or 2010-08-26T07:35",
        ),
        (
            ["flow", "ingest", "{t}", "{t}/s.zarr", "--end", "08/26/2010"],
            "--end '08/26/2010' is not a time; expected YYYY-MM-DD",
        ),
        (
            ["synth", "{t}/a", "--start", "1/6/2015"],
            "--start '1/6/2015' is not a time; expected YYYY-MM-DD",
        ),
        (
            ["ingest", "{t}", "{t}/s.zarr", "--start", "2010-02-30"],
            "--start '2010-02-30' is not a real date/time",
        ),
        (["no-such-command"], "No such command 'no-such-command'. (see: nowcast --help)"),
    ],
)
def test_every_command_answers_in_one_line(tmp_path, args, expected):
    t = str(tmp_path)
    res = _invoke([a.format(t=t) for a in args])
    _assert_one_line_error(res, expected.format(t=t))


@pytest.mark.parametrize("command", [["serve"], ["flow", "forecast"]])
def test_scheduled_forecasts_refuse_a_bad_member_count(tmp_path, small_store, command):
    args = [*command, "--store", small_store, "--site", tmp_path / "site"]
    res = _invoke([*args, "--baseline", "persistence", "--members", "0"])
    _assert_one_line_error(res, "--members must be >= 1, got 0")
    assert not (tmp_path / "site").exists()


def test_cli_times_in_iso_form_are_read_as_utc():
    from flows._cli_time import parse_time

    assert parse_time("--start", "2010-08-26") == "2010-08-26"
    assert parse_time("--start", "2010-08-26T07:35") == "2010-08-26T07:35"
    assert parse_time("--start", "2010-08-26 07:35:00Z") == "2010-08-26 07:35:00"
    assert parse_time("--start", "2010-08-26T07:35+00:00") == "2010-08-26T07:35"
    assert parse_time("--start", None) is None


def test_ingest_of_another_sources_files_suggests_that_source(tmp_path):
    from tests.pipeline import radar_formats as rf

    root = tmp_path / "mch"
    for name in ("AQC161932045V_00005.801.gif", "AQC161932050V_00005.801.gif"):
        rf.write_mch_gif(root / name, np.zeros((640, 710), np.uint8))
    res = _invoke(["ingest", root, tmp_path / "s.zarr", "--source", "knmi"])
    _assert_one_line_error(
        res,
        f"no readable knmi file under {root} (0 found, 0 passed over): the store "
        f"{tmp_path / 's.zarr'} needs the files' grid; the files look like --source mch "
        "(2 files named like it)",
    )
    res = _invoke(["ingest", root, tmp_path / "s.zarr"])  # --source hko7, the default
    _assert_one_line_error(
        res, "no directory {}; the files look like --source mch (2 files".format(root / "radarPNG")
    )
    assert not (tmp_path / "s.zarr").exists()


def _commands(group, path=()):
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a group
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def test_help_paragraphs_are_not_cut_mid_sentence():
    """Typer prints a docstring's line breaks; the terminal then cut lines mid-sentence."""
    import typer.main

    root = typer.main.get_command(app)
    commands = dict(_commands(root))
    assert len(commands) > 20
    for path, cmd in commands.items():
        for para in (cmd.help or "").split("\n\n"):
            lines = para.split("\n")
            if para.startswith("\b") or any(ln[:1] in ("-", " ") for ln in lines[1:]):
                continue  # a list or an example keeps its lines
            assert len(lines) == 1, (path, para)
    res = CliRunner().invoke(app, ["ingest", "--help"], env={"COLUMNS": "80"})
    text = " ".join(res.output.split())
    assert "impossible frame names and day folders, and symbolic links leading outside" in text
    lines = [ln.strip() for ln in res.output.splitlines()]
    assert "and" not in lines and "refused. Prints the report as one JSON line." not in lines


def test_help_describes_progress_and_every_source():
    res = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "HKO-7 style" not in res.output
    assert "HKO-7, ODIM_H5, KNMI, BoM Rainfields, MeteoSwiss and FMI" in res.output
    for command, what in (("ingest", "frames"), ("resample", "slots")):
        res = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "200"})
        assert f"Show a progress bar ({what} done, {what} per second) on standard" in res.output

"""One options object per job: ``nowcast X`` and ``nowcast flow X`` take the same flags and
hand the same :mod:`nowcast.options` object to the library."""

from __future__ import annotations

import dataclasses
import json

import pytest
import typer
import xarray as xr
from typer.main import get_command
from typer.testing import CliRunner

from flows._cli_evaluate import EVALUATE_FLAGS
from flows._cli_options import Flag, build_options, options_command
from flows._cli_train import TRAIN_FLAGS
from flows.cli import app
from nowcast.options import EvaluateOptions, TrainOptions
from tests.nowcast.test_train import _TINY_CONFIG, FRACTIONS, _write_tiny_store

ROOT = get_command(app)


def _flags(*path: str) -> set[str]:
    command = ROOT
    for name in path:
        command = command.commands[name]
    return {o for p in command.params for o in (*p.opts, *p.secondary_opts)}


def _params(*args: str) -> dict:
    """The parsed values of a command line (no command is run)."""
    command = ROOT
    args = list(args)
    while hasattr(command, "commands"):
        command = command.commands[args.pop(0)]
    return command.make_context(command.name, args).params


@pytest.mark.parametrize("job", ["train", "evaluate"])
def test_a_job_and_its_flow_take_the_same_flags(job):
    assert _flags(job) == _flags("flow", job)


def test_ingest_and_flow_ingest_spell_shared_flags_alike():
    shared = {"--start", "--end", "--threads", "--scheduler-address"}
    assert shared <= _flags("ingest")
    assert shared <= _flags("flow", "ingest")
    assert "--dask-workers" in _flags("flow", "ingest")
    for old in ("--workers", "--address"):
        assert old not in _flags("ingest") | _flags("flow", "ingest")


def test_flow_forecast_names_its_issue_time_as_forecast_does():
    assert "--issue-time" in _flags("forecast") & _flags("flow", "forecast")
    assert "--now" not in _flags("flow", "forecast")


def test_flags_build_the_options_object():
    args = ["train", "--model", "convgru", "--data", "d", "--out", "o", "--epochs", "3"]
    args += ["--lr", "0.002", "--split-fractions", "0.5,0.25,0.25", "--no-progress", "--resume"]
    params = _params(*args)
    expected = TrainOptions(
        epochs=3, lr=0.002, split_fractions=(0.5, 0.25, 0.25), progress=False, resume=True
    )
    assert build_options(TrainOptions, TRAIN_FLAGS, params) == expected
    args = ["flow", "evaluate", "--data", "d", "--baselines", "persistence,steps"]
    args += ["--extra-leads", "66,72", "--members", "2", "--perturb", "--split", "valid"]
    assert build_options(EvaluateOptions, EVALUATE_FLAGS, _params(*args)) == EvaluateOptions(
        baselines=("persistence", "steps"),
        extra_lead_times=(66.0, 72.0),
        members=2,
        perturb=True,
        split="valid",
    )


def test_defaults_of_the_flags_are_the_dataclass_defaults():
    train = _params("train", "--model", "m", "--data", "d", "--out", "o")
    assert build_options(TrainOptions, TRAIN_FLAGS, train) == TrainOptions()
    evaluate = _params("evaluate", "--data", "d")
    assert build_options(EvaluateOptions, EVALUATE_FLAGS, evaluate) == EvaluateOptions()


def test_a_field_without_a_flag_is_refused():
    flags = {k: v for k, v in TRAIN_FLAGS.items() if k != "stride"}
    with pytest.raises(TypeError, match=r"fields without a flag \['stride'\]"):
        options_command(TrainOptions, flags)


def test_a_command_parameter_named_like_a_field_is_refused():
    def command(seed: int = typer.Option(0, "--x"), *, options: TrainOptions) -> None:
        """Clashes with TrainOptions.seed."""

    with pytest.raises(TypeError, match=r"parameter\(s\) \['seed'\] are options fields"):
        options_command(TrainOptions, TRAIN_FLAGS)(command)


def test_every_train_flag_has_help():
    assert all(isinstance(f, Flag) and f.help for f in TRAIN_FLAGS.values())
    assert all(isinstance(f, Flag) and f.help for f in EVALUATE_FLAGS.values())


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_options")
    store = _write_tiny_store(root / "tiny.zarr")
    config = root / "tiny.yaml"
    config.write_text(_TINY_CONFIG)
    return store, config


@pytest.mark.slow
def test_train_and_flow_train_hand_the_same_options_to_the_library(tiny, tmp_path, prefect_server):
    store, config = tiny
    fractions = ",".join(str(f) for f in FRACTIONS)
    flags = ["--epochs", "1", "--iters-per-epoch", "2", "--batch-size", "2", "--lr", "0.003"]
    flags += ["--val-samples", "2", "--seed", "5", "--stride", "3", "--no-progress"]
    flags += ["--split-fractions", fractions, "--time-budget-minutes", "30"]
    expected = TrainOptions(
        epochs=1,
        iters_per_epoch=2,
        batch_size=2,
        lr=0.003,
        val_samples=2,
        seed=5,
        stride=3,
        progress=False,
        split_fractions=tuple(float(f) for f in fractions.split(",")),
        time_budget_minutes=30.0,
    )
    saved = {}
    for prefix in (["train"], ["flow", "train"]):
        out = tmp_path / "-".join(prefix)
        args = [*prefix, "--model", "convgru", "--config", str(config), "--data", str(store)]
        res = CliRunner().invoke(app, [*args, "--out", str(out), *flags])
        assert res.exit_code == 0, res.output
        saved[prefix[0]] = json.loads((out / "metrics.json").read_text())
    want = json.loads(json.dumps(dataclasses.asdict(expected)))
    assert saved["train"]["options"] == want
    assert saved["flow"]["options"] == want
    # and the library used them: 2 steps of a 2-sample batch at lr 0.003
    for doc in saved.values():
        assert doc["epochs"][0]["samples"] == 4
        assert doc["epochs"][0]["lr"] == pytest.approx(0.003)


@pytest.mark.slow
def test_evaluate_and_flow_evaluate_score_alike(tiny, tmp_path, prefect_server):
    store, _ = tiny
    fractions = ",".join(str(f) for f in FRACTIONS)
    flags = ["--data", str(store), "--baselines", "persistence", "--in-frames", "3"]
    flags += ["--out-frames", "3", "--max-samples", "2", "--split-fractions", fractions]
    flags += ["--no-progress"]
    results = {}
    for prefix in (["evaluate"], ["flow", "evaluate"]):
        out = tmp_path / "-".join(prefix)
        res = CliRunner().invoke(app, [*prefix, *flags, "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert "persistence: CSI(>=0.5 mm/h)" in res.output
        results[prefix[0]] = xr.open_dataset(out / "results.nc").load()
    for ds in results.values():
        assert ds.attrs["n_samples"] == 2
        assert list(ds["lead_time"].values) == [6.0, 12.0, 18.0]
    xr.testing.assert_identical(
        results["evaluate"].drop_vars("seconds_per_sample"),
        results["flow"].drop_vars("seconds_per_sample"),
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (
            ["evaluate", "R", "--baselines", "--baseline-names", "steps", "--members", "4"],
            ["evaluate", "R", "--baselines", "steps", "--members", "4"],
        ),
        (["evaluate", "R", "--baselines"], ["evaluate", "R", "--baselines", "persistence,pysteps"]),
        (
            ["evaluate", "--baselines-only", "--baseline-names", "sprog", "--out", "o"],
            ["evaluate", "--out", "o", "--baselines", "sprog"],
        ),
        (["evaluate", "--baselines", "steps", "--run", "R"], None),
        (["forecast", "--baselines"], None),
    ],
)
def test_previous_release_evaluate_spellings_are_rewritten(old, new):
    from flows._cli_evaluate import legacy_args

    assert legacy_args(old) == (old if new is None else new)


def test_evaluate_takes_the_run_as_argument_or_option(tmp_path):
    from typer.testing import CliRunner

    from flows.cli import app

    res = CliRunner().invoke(
        app, ["evaluate", str(tmp_path / "a"), "--run", str(tmp_path / "b"), "--data", "d"]
    )
    assert res.exit_code == 2
    assert "two runs given" in res.output

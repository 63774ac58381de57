"""``nowcast evaluate`` and ``nowcast flow evaluate``: score a trained run and/or baselines.

Examples::

    nowcast evaluate --run runs/trajgru --data data/hko7_80.zarr --split test \\
        --scheme regular --baselines persistence,pysteps --perturb --extra-leads 66,72,120
    nowcast evaluate --baselines persistence,pysteps --data data/hko7_80.zarr --out reports/bl

Both commands take the same flags, generated from :class:`nowcast.options.EvaluateOptions`
(:data:`EVALUATE_FLAGS`, :mod:`flows._cli_options`), and hand the same options object to
:func:`nowcast.evaluate.evaluate_run`: directly, or through the Prefect flow
:func:`flows.evaluate.evaluate_flow`. See :mod:`nowcast.evaluate` for what is computed and
written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from flows._cli_options import Flag, floats, options_command
from nowcast.options import EvaluateOptions


def _names(text: str | None) -> tuple[str, ...]:
    return tuple(n.strip() for n in (text or "").split(",") if n.strip())


def _day_files(folder: Path | None) -> dict[str, Path] | None:
    if folder is None:
        return None
    files = {n: folder / f"hko7_rainy_{n}_days.txt" for n in ("train", "valid", "test")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise typer.BadParameter(f"--day-lists: missing file(s) {missing}")
    return files


DEFAULT_BASELINES = "persistence,pysteps"
"""What ``--baselines`` without names scores (the previous release's flag)."""


def legacy_args(args: list[str]) -> list[str]:
    """Rewrite the previous release's evaluate spellings into today's flags.

    Scripts written for it keep working: ``--baselines`` as a bare flag (now
    ``--baselines persistence,pysteps``), ``--baseline-names A,B`` (now the value of
    ``--baselines``), ``--baselines-only`` (now: no ``--run``) and ``--no-baselines``.
    Command lines of other commands are returned unchanged.

    Parameters
    ----------
    args : list of str
        The command line without the program name.

    Returns
    -------
    list of str
        The command line with today's spellings.
    """
    end = args.index("--") if "--" in args else len(args)
    head, tail = list(args[:end]), list(args[end:])
    if "evaluate" not in head:
        return list(args)
    names = None
    if "--baseline-names" in head:
        i = head.index("--baseline-names")
        if i + 1 < len(head):
            names = head[i + 1]
            del head[i : i + 2]
    wanted = names is not None
    for flag in ("--baselines-only", "--no-baselines"):
        while flag in head:
            head.remove(flag)
    out: list[str] = []
    i = 0
    while i < len(head):
        a = head[i]
        if a == "--baselines" and (i + 1 == len(head) or head[i + 1].startswith("-")):
            out += ["--baselines", names or DEFAULT_BASELINES]
            wanted = False
        else:
            out.append(a)
        i += 1
    if wanted and "--baselines" not in out:
        out += ["--baselines", names]
    return out + tail


def _comma(values) -> str:
    return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


EVALUATE_FLAGS: dict[str, Flag] = {
    "split": Flag(("--split",), "Dataset split: train, valid or test."),
    "scheme": Flag(
        ("--scheme",), "Sampling scheme: regular, irregular_input, irregular_target, irregular."
    ),
    "baselines": Flag(
        ("--baselines",),
        "Comma-separated baselines to score too (persistence, pysteps, sprog, steps); "
        "alone without --run.",
        parse=_names,
        show=_comma,
    ),
    "extra_lead_times": Flag(
        ("--extra-leads",),
        "Comma-separated lead times (min) not trained on, e.g. 66,72,120; reported apart.",
        parse=floats("--extra-leads"),
        show=_comma,
    ),
    "perturb": Flag(
        ("--perturb",),
        "Robustness: noise, outliers, missing regions, dropped frames.",
        cli_type=bool,
    ),
    "perturb_samples": Flag(
        ("--perturb-samples",), "Robustness on only the first N samples (cost bound)."
    ),
    "in_frames": Flag(("--in-frames",), "Input frames (default: the run's config; baselines: 5)."),
    "out_frames": Flag(
        ("--out-frames",), "Target frames (default: the run's config; baselines: 20)."
    ),
    "split_fractions": Flag(
        ("--split-fractions",),
        "Chronological train,valid,test day fractions.",
        parse=floats("--split-fractions", 3),
        show=_comma,
        cli_type=str,
    ),
    "day_files": Flag(
        ("--day-lists",),
        "Folder with hko7_rainy_{train,valid,test}_days.txt; overrides --split-fractions.",
        parse=_day_files,
        cli_type=Path | None,
    ),
    "stride": Flag(("--stride",), "Slots between consecutive sample windows."),
    "allow_other_grid": Flag(
        ("--allow-other-grid",),
        "Score a run on a store of another pixel size than it was trained at (recorded).",
    ),
    "batch_size": Flag(("--batch-size",), "Samples per batch."),
    "max_samples": Flag(("--max-samples",), "Evaluate only the first N samples."),
    "seed": Flag(("--seed",), "Seed of the sampling scheme and corruptions."),
    "device": Flag(("--device",), "cpu or cuda."),
    "progress": Flag(("--progress/--no-progress",), "Show a progress bar."),
    "members": Flag(
        ("--members",),
        "Score N-member ensembles (the model's, steps'): CRPS, reliability, ROC, ranks.",
    ),
    "probability": Flag(
        ("--probability",),
        "With --members: probability estimator, debiased (finite-ensemble correction) or "
        "fraction (k / N).",
    ),
    "calibration": Flag(
        ("--calibration",),
        "With --members: score the model's probabilities calibrated by this file "
        "(nowcast calibrate); baselines keep --probability.",
        parse=lambda v: None if v is None else str(v),
        cli_type=Path | None,
    ),
    "bootstrap": Flag(
        ("--bootstrap",),
        "Bootstrap resamples of the confidence intervals and paired differences (0: none).",
    ),
    "confidence": Flag(("--confidence",), "Level of the intervals, e.g. 0.9."),
    "bootstrap_block": Flag(
        ("--bootstrap-block",),
        "Block length (sequences) of the moving-block bootstrap (default: windows sharing "
        "a frame).",
    ),
    "fss_scales_km": Flag(
        ("--fss-scales",),
        "Comma-separated FSS neighbourhood sides in km, e.g. 10,20,40 (empty: no FSS).",
        parse=floats("--fss-scales"),
        show=_comma,
    ),
    "cases": Flag(
        ("--cases",), "A case of the per-case tables: store (each --data) or day; pooled too."
    ),
}
"""The flag of every :class:`~nowcast.options.EvaluateOptions` field (both evaluate commands)."""


def _evaluate_command(run_job: Callable[..., dict], doc: str) -> Callable:
    """An evaluate command calling ``run_job(run, data, out, options)``."""

    @options_command(EvaluateOptions, EVALUATE_FLAGS)
    def command(
        run_arg: Path | None = typer.Argument(
            None, metavar="RUN", help="The training run, as with --run.", show_default=False
        ),
        run: Path | None = typer.Option(
            None, "--run", help="Training run directory holding best.pt (none: baselines only)."
        ),
        data: list[Path] = typer.Option(
            ...,
            "--data",
            help="Resampled Zarr store (nowcast resample); repeat for several events "
            "(scored per event and pooled).",
        ),
        out: Path | None = typer.Option(
            None, "--out", help="Output directory (default RUN/eval/<split>_<scheme>)."
        ),
        *,
        options: EvaluateOptions,
    ) -> None:
        if run_arg is not None and run is not None and run_arg != run:
            raise typer.BadParameter(f"two runs given: {run_arg} and --run {run}")
        run = run if run is not None else run_arg
        if run is None and not options.baselines:
            raise typer.BadParameter("give --run RUN_DIR, or --baselines NAMES to score alone")
        if run is None and out is None:
            raise typer.BadParameter("scoring the baselines alone (no --run) needs --out DIR")
        if options.members is not None and options.members < 1:
            raise typer.BadParameter(f"--members must be >= 1, got {options.members}")
        from nowcast.probability import METHODS

        if options.probability not in METHODS:
            raise typer.BadParameter(
                f"--probability must be one of {', '.join(sorted(METHODS))}; "
                f"got {options.probability!r}"
            )
        if options.calibration is not None and options.members is None:
            raise typer.BadParameter("--calibration needs --members N (the fitted member count)")
        if options.calibration is not None and run is None:
            raise typer.BadParameter("--calibration needs --run (it calibrates the run's model)")
        if options.calibration is not None and not Path(options.calibration).is_file():
            raise typer.BadParameter(f"--calibration: no file {options.calibration}")
        if options.bootstrap < 0:
            raise typer.BadParameter(f"--bootstrap must be >= 0, got {options.bootstrap}")
        if not 0.0 < options.confidence < 1.0:
            raise typer.BadParameter(f"--confidence must lie in (0, 1), got {options.confidence}")
        if options.bootstrap_block is not None and options.bootstrap_block < 1:
            raise typer.BadParameter(
                f"--bootstrap-block must be >= 1, got {options.bootstrap_block}"
            )
        if any(not v > 0 for v in options.fss_scales_km):
            raise typer.BadParameter(
                f"--fss-scales must be positive km, got {_comma(options.fss_scales_km)}"
            )
        if options.cases not in ("store", "day"):
            raise typer.BadParameter(f"--cases must be store or day, got {options.cases!r}")
        summary = run_job(run, data, out, options)
        for line in summary["lines"]:
            typer.echo(line)
        names = ", ".join(Path(p).name for p in summary["files"])
        typer.echo(f"wrote {names} to {summary['out_dir']}")

    command.__doc__ = doc
    return command


def _one_or_list(data: list[Path]) -> Path | list[Path]:
    return data[0] if len(data) == 1 else list(data)


def _run_library(
    run: Path | None, data: list[Path], out: Path | None, options: EvaluateOptions
) -> dict:
    from nowcast.evaluate import evaluate_run

    return evaluate_run(run, _one_or_list(data), options, out_dir=out).summary()


def _run_flow(
    run: Path | None, data: list[Path], out: Path | None, options: EvaluateOptions
) -> dict:
    from flows._prefect_env import configure

    home = out if out is not None else (run if run is not None else Path.cwd())
    home.mkdir(parents=True, exist_ok=True)
    configure(home)
    from flows.evaluate import evaluate_flow

    return evaluate_flow(
        None if run is None else str(run),
        str(data[0]) if len(data) == 1 else [str(d) for d in data],
        options,
        out_dir=None if out is None else str(out),
    )


evaluate_command = _evaluate_command(
    _run_library,
    "Score RUN's model (and/or baselines) with the HKO-7 protocol and thesis metrics.",
)
flow_evaluate_command = _evaluate_command(
    _run_flow, "Evaluate a run and/or baselines as a Prefect flow (the flags of nowcast evaluate)."
)


def calibrate_command(
    results: list[Path] = typer.Argument(
        ...,
        metavar="RESULTS...",
        help="results.nc of `nowcast evaluate RUN --split valid --members N` (several: "
        "their tables are added up).",
        show_default=False,
    ),
    out: Path = typer.Option(
        ..., "--out", help="Calibration file to write (e.g. RUN/calibration.nc)."
    ),
    predictor: str | None = typer.Option(
        None, "--predictor", help="Predictor of RESULTS to calibrate (default: the model)."
    ),
) -> None:
    """Fit calibrated exceedance probabilities on validation evaluations' count tables."""
    import xarray as xr

    from nowcast.calibration import fit_calibration

    parts = []
    for path in results:
        if not path.is_file():
            raise typer.BadParameter(f"no results file {path}")
        try:
            with xr.open_dataset(path) as ds:
                parts.append(ds.load())
        except (OSError, ValueError) as err:
            raise typer.BadParameter(f"{path} is not a readable NetCDF file: {err}") from None
        if ds.attrs.get("split") == "test":
            typer.echo(f"warning: {path} scores the test split; fit on validation days", err=True)
    calibration = fit_calibration(parts, predictor)
    calibration.save(out)
    typer.echo(
        f"calibrated {calibration.predictor or 'the ensemble'}: {calibration.n_members} "
        f"members, thresholds {', '.join(f'{t:g}' for t in calibration.thresholds_mmh)} mm/h, "
        f"leads {calibration.lead_range[0]:g}-{calibration.lead_range[1]:g} min, "
        f"{calibration.n_pixels} pixels per threshold; wrote {out}"
    )


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to *app*."""
    app.command("evaluate")(evaluate_command)
    app.command("calibrate")(calibrate_command)

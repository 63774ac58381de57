"""``nowcast evaluate``: score a trained run and/or the classical baselines.

Examples::

    nowcast evaluate runs/trajgru --data data/hko7_80.zarr --split test --scheme regular \\
        --baselines --perturb --extra-leads 66,72,120
    nowcast evaluate --baselines-only --data data/hko7_80.zarr --out reports/baselines

See :mod:`nowcast.evaluate` for what is computed and written.
"""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to *app*."""
    app.command("evaluate")(evaluate_command)


def _parse_numbers(text: str | None, option: str, count: int | None = None) -> list[float]:
    if not text:
        return []
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as err:
        raise typer.BadParameter(f"{option} must be comma-separated numbers, got {text!r}") from err
    if count is not None and len(values) != count:
        raise typer.BadParameter(f"{option} must be {count} comma-separated numbers, got {text!r}")
    return values


def evaluate_command(
    run_dir: Path | None = typer.Argument(
        None, help="Training run directory holding best.pt (omit with --baselines-only)."
    ),
    data: Path = typer.Option(..., "--data", help="Resampled Zarr store (nowcast resample)."),
    split: str = typer.Option("test", "--split", help="Dataset split: train, valid or test."),
    scheme: str = typer.Option(
        "regular",
        "--scheme",
        help="Sampling scheme: regular, irregular_input, irregular_target, irregular.",
    ),
    baselines: bool = typer.Option(
        False, "--baselines/--no-baselines", help="Also score persistence and pysteps."
    ),
    baseline_names: str = typer.Option(
        "persistence,pysteps",
        "--baseline-names",
        help="Baselines to run with --baselines/--baselines-only (persistence, pysteps, sprog, steps).",
    ),
    baselines_only: bool = typer.Option(
        False, "--baselines-only", help="Score the baselines alone (no RUN_DIR; needs --out)."
    ),
    perturb: bool = typer.Option(
        False, "--perturb", help="Robustness: noise, outliers, missing regions, dropped frames."
    ),
    perturb_samples: int | None = typer.Option(
        None, "--perturb-samples", help="Robustness on only the first N samples (cost bound)."
    ),
    extra_leads: str | None = typer.Option(
        None,
        "--extra-leads",
        help="Comma-separated lead times (min) not trained on, e.g. 66,72,120; reported apart.",
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Output directory (default RUN_DIR/eval/<split>_<scheme>)."
    ),
    in_frames: int | None = typer.Option(
        None, "--in-frames", help="Input frames (default: the run's config; baselines: 5)."
    ),
    out_frames: int | None = typer.Option(
        None, "--out-frames", help="Target frames (default: the run's config; baselines: 20)."
    ),
    split_fractions: str = typer.Option(
        "0.8,0.1,0.1", "--split-fractions", help="Chronological train,valid,test day fractions."
    ),
    day_lists: Path | None = typer.Option(
        None,
        "--day-lists",
        help="Folder with hko7_rainy_{train,valid,test}_days.txt; overrides --split-fractions.",
    ),
    stride: int = typer.Option(5, "--stride", help="Slots between consecutive sample windows."),
    batch_size: int = typer.Option(4, "--batch-size", help="Samples per batch."),
    max_samples: int | None = typer.Option(
        None, "--max-samples", help="Evaluate only the first N samples."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampling scheme and corruptions."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    members: int | None = typer.Option(
        None,
        "--members",
        min=1,
        help="Score N-member ensembles (the model's, steps'): CRPS, reliability, ROC, ranks.",
    ),
) -> None:
    """Score RUN_DIR's model (and/or baselines) with the HKO-7 protocol and thesis metrics."""
    from nowcast.evaluate import evaluate_run, summarize

    if baselines_only and run_dir is not None:
        raise typer.BadParameter("--baselines-only takes no RUN_DIR")
    if not baselines_only and run_dir is None:
        raise typer.BadParameter("give RUN_DIR, or --baselines-only to score the baselines alone")
    if baselines_only and out is None:
        raise typer.BadParameter("--baselines-only needs --out DIR")
    names = [n.strip() for n in baseline_names.split(",") if n.strip()]
    chosen = names if (baselines or baselines_only) else False
    fractions = _parse_numbers(split_fractions, "--split-fractions", 3)
    leads = _parse_numbers(extra_leads, "--extra-leads") or None
    day_files = None
    if day_lists is not None:
        day_files = {n: day_lists / f"hko7_rainy_{n}_days.txt" for n in ("train", "valid", "test")}
        missing = [str(p) for p in day_files.values() if not p.is_file()]
        if missing:
            raise typer.BadParameter(f"--day-lists: missing file(s) {missing}")
    outputs = evaluate_run(
        None if baselines_only else run_dir,
        data,
        split=split,
        scheme=scheme,
        baselines=chosen,
        extra_lead_times=leads,
        perturb=perturb,
        perturb_samples=perturb_samples,
        out_dir=out,
        in_frames=in_frames,
        out_frames=out_frames,
        split_fractions=fractions,
        day_files=day_files,
        stride=stride,
        batch_size=batch_size,
        max_samples=max_samples,
        seed=seed,
        device=device,
        progress=progress,
        members=members,
    )
    s = summarize(outputs.results)
    thr = float(s["threshold"].values[0])
    for name in s["predictor"].values:
        sp = s.sel(predictor=name)
        typer.echo(
            f"{name}: CSI(>={thr:g} mm/h) {float(sp['CSI'].sel(threshold=thr)):.4f}  "
            f"B-MSE {float(sp['B-MSE']):.1f}  MSE x1e4 {float(sp['MSE']) * 1e4:.2f}  "
            f"SSIM x1e2 {float(sp['SSIM']) * 1e2:.2f}  PSNR {float(sp['PSNR']):.2f}"
        )
    if "CRPS" in outputs.results:
        crps = outputs.results["CRPS"].mean("lead_time")
        for name in crps["predictor"].values:
            typer.echo(f"{name}: CRPS x1e2 {float(crps.sel(predictor=name)) * 1e2:.4f}")
    typer.echo(f"wrote {', '.join(p.name for p in outputs.files)} to {outputs.out_dir}")

"""Prefect flow: evaluate a trained run and/or baselines (thin over ``nowcast.evaluate``).

One compute task (no retries) calling :func:`nowcast.evaluate.evaluate_run`, which writes
``results.nc``, ``results.md`` and ``skill.png`` (HKO-7 protocol scores and the thesis's
metrics per predictor and lead time; with ``members`` also the probabilistic scores and
``probabilistic.png``, docs/ensembles.md).
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task

__all__ = ["evaluate_flow", "evaluate_task"]


@task(name="evaluate")
def evaluate_task(
    run_dir: str | None,
    data: str,
    split: str = "test",
    scheme: str = "regular",
    baselines: bool | list[str] = True,
    out_dir: str | None = None,
    max_samples: int | None = None,
    batch_size: int = 4,
    extra_lead_times: list[float] | None = None,
    progress: bool = True,
    members: int | None = None,
) -> dict:
    """Evaluate; returns ``out_dir``, the files written and the Markdown table's path."""
    from nowcast.evaluate import evaluate_run

    out = evaluate_run(
        run_dir,
        data,
        split,
        scheme,
        baselines=baselines,
        out_dir=out_dir,
        max_samples=max_samples,
        batch_size=batch_size,
        extra_lead_times=extra_lead_times,
        progress=progress,
        members=members,
    )
    return {
        "out_dir": str(out.out_dir),
        "files": [str(p) for p in out.files],
        "table": str(out.out_dir / "results.md"),
        "predictors": [str(p) for p in out.results["predictor"].values],
    }


@flow(name="evaluate")
def evaluate_flow(
    run_dir: str | None,
    data: str,
    split: str = "test",
    scheme: str = "regular",
    baselines: bool | list[str] = True,
    out_dir: str | None = None,
    max_samples: int | None = None,
    batch_size: int = 4,
    extra_lead_times: list[float] | None = None,
    members: int | None = None,
) -> dict:
    """Evaluate a run (``run_dir``; None = baselines only, then ``out_dir`` is needed).

    ``members``: also score ``members``-member ensembles (``nowcast evaluate --members``).
    """
    summary = evaluate_task(
        run_dir,
        data,
        split,
        scheme,
        baselines=baselines,
        out_dir=out_dir,
        max_samples=max_samples,
        batch_size=batch_size,
        extra_lead_times=extra_lead_times,
        members=members,
    )
    get_run_logger().info("evaluation written to %s", summary["out_dir"])
    return summary

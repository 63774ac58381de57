"""Prefect flow: evaluate a trained run and/or baselines (thin over ``nowcast.evaluate``).

The flow and its task take the run, the store, one :class:`nowcast.options.EvaluateOptions`
(handed unchanged to the library; ``nowcast evaluate`` and ``nowcast flow evaluate`` build
it from the same flags) and the output directory. One compute task (no retries) calling
:func:`nowcast.evaluate.evaluate_run`, which writes
``results.nc``, ``results.md`` and ``skill.png`` (HKO-7 protocol scores and the thesis's
metrics per predictor and lead time; with ``members`` also the probabilistic scores and
``probabilistic.png``, docs/ensembles.md).
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from nowcast.options import EvaluateOptions

__all__ = ["evaluate_flow", "evaluate_task"]


@task(name="evaluate")
def evaluate_task(
    run_dir: str | None,
    data: str | list[str],
    options: EvaluateOptions | None = None,
    out_dir: str | None = None,
) -> dict:
    """Evaluate; returns :meth:`nowcast.evaluate.EvaluationOutputs.summary` (``out_dir``,
    the files written, the Markdown table's path, the predictors, the headline lines)."""
    from nowcast.evaluate import evaluate_run

    return evaluate_run(run_dir, data, options, out_dir=out_dir).summary()


@flow(name="evaluate")
def evaluate_flow(
    run_dir: str | None,
    data: str | list[str],
    options: EvaluateOptions | None = None,
    out_dir: str | None = None,
) -> dict:
    """Evaluate a run (``run_dir``; None = the baselines of ``options`` alone, then
    ``out_dir`` is needed) on one store or several (``data`` a list: per-case and pooled
    scores)."""
    summary = evaluate_task(run_dir, data, options, out_dir=out_dir)
    get_run_logger().info("evaluation written to %s", summary["out_dir"])
    return summary

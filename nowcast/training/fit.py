"""The training loop: :func:`train`, its fit loop, validation and :class:`EarlyStopping`.

What a run does
---------------
* Optimiser: Adam with the thesis's settings from the config's ``train:`` section
  (``lr`` 1e-4, ``betas`` (0.5, 0.999) for HKO-7: the thesis's "momentum 0.5" is Adam's
  beta1), gradient-norm clipping at ``grad_clip``.
* Loss: :func:`nowcast.losses.get_loss` (``thesis`` by default, ``balanced`` or
  ``balanced_csi``), masked with the dataset's ``target_mask``.
* LR schedule (``lr_schedule``): ``plateau`` (default) multiplies the LR by ``lr_factor``
  (0.5) after every epoch whose validation loss is not below the best so far
  (``ReduceLROnPlateau`` with ``lr_patience`` 0); with early stopping after two rises in a
  row this means: one rise halves the LR, a second consecutive rise stops the run. Also
  ``step`` (x ``lr_factor`` every ``lr_step_epochs`` epochs) and ``constant``. The thesis
  names "a learning rate updating mechanism" without details; none of these depend on the
  total number of epochs, so extending a finished run with ``--resume --epochs N`` is
  consistent.
* Early stopping: stop when the validation loss rises two epochs in a row (each epoch's
  loss above the previous epoch's, :class:`EarlyStopping`); the epoch with the lowest
  validation loss is kept in ``best.pt``.
* Data order: epoch ``e`` visits the training samples in an order drawn from
  ``numpy.random.default_rng([seed, e])`` (concatenated permutations, as many samples as
  ``iters_per_epoch * batch_size``), so it depends on (seed, epoch) only. With RNG states
  (python, numpy, torch, CUDA) restored from ``last.pt``, a run resumed at an epoch boundary
  ends with bit-identical weights to an uninterrupted one (same seed, CPU). Validation uses a
  fixed, evenly spaced subset of the validation split (``val_samples``, all by default) and
  averages per-sample losses, so it does not depend on batching or on the number of
  processes.
* A time budget (``time_budget_minutes``) is checked after every step (at least one step
  and one epoch are always made); when it runs out the current epoch ends early (it is
  validated and checkpointed as usual, marked ``truncated``), so a budgeted run always
  leaves a usable ``best.pt``. A truncated epoch
  counts like any other for the LR schedule and early stopping. Resuming continues with the
  next epoch; only runs that stop at epoch boundaries resume bit-identically.
* NaN or inf in the training loss, the gradient norm or the validation loss stops the run
  with :class:`TrainingDivergedError` naming the epoch and step; nothing is written for the
  bad epoch, so ``last.pt`` still holds the last good state.
* Multi-process: started under ``torchrun`` (``WORLD_SIZE`` > 1) the loop uses
  DistributedDataParallel (gloo on CPU, nccl on CUDA). ``batch_size`` is the GLOBAL batch:
  each step's global batch (same indices as a one-process run) is split into equal
  per-rank slices, so a two-process run follows the one-process run up to float rounding.
  Only rank 0 writes files.
* Models that carry their own objective (``trains_itself``, e.g. S-HR-VQVAE) are called with
  ``target=`` and ``target_mask=`` and return ``loss`` (used instead of the configured
  loss, in training and validation), ``prediction`` (scored by the validation MSE and MAE)
  and ``usage`` (codeword counts per layer: the epoch's unused codewords are reported as
  ``dead_codes``, e.g. ``"0/8 5/64 301/512"``, in the history and the log).
* Mixed precision (``amp=True``, CUDA only): ``torch.autocast(float16)`` for the forward
  pass and a ``GradScaler``; the loss is computed in float32.

The run directory it writes is described in :mod:`nowcast.training.rundir`.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nowcast.losses import get_loss, masked_mae, masked_mse
from nowcast.options import TrainOptions
from nowcast.training.data import (
    _epoch_order,
    _extra_inputs,
    _IndexSampler,
    _resolve_config,
    _to_device,
    _val_indices,
    _worker_context,
)
from nowcast.training.distributed import (
    _all_sum,
    _Dist,
    _init_distributed,
    _out_of_time,
    _resolve_device,
)
from nowcast.training.report import _write_metrics
from nowcast.training.rng import _rng_state, _seed_everything, _set_rng_state
from nowcast.training.rundir import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    _check_resumable,
    _config_to_dict,
    _load_checkpoint,
    save_best_checkpoint,
    save_last_checkpoint,
)
from nowcast.training.rungrid import adapt_model, check_store
from nowcast.training.schedules import _schedule_step, get_schedule
from nowcast.training.settings import TrainingDivergedError, TrainResult, TrainSettings
from nowcast.training.stores import as_paths, init_from_run, training_data

__all__ = ["EarlyStopping", "train"]


class EarlyStopping:
    """Stop when the validation loss rises ``patience`` epochs in a row.

    A "rise" is an epoch whose validation loss is strictly above the previous epoch's;
    any epoch that does not rise resets the count.

    Parameters
    ----------
    patience : int
        Consecutive rises that stop the run (thesis: 2).
    """

    def __init__(self, patience: int = 2) -> None:
        if patience < 1:
            raise ValueError(f"patience must be >= 1, got {patience!r}")
        self.patience = int(patience)
        self.previous: float | None = None
        self.rises = 0

    def step(self, val_loss: float) -> bool:
        """Record one epoch's validation loss; return True when training should stop."""
        val_loss = float(val_loss)
        if not math.isfinite(val_loss):
            raise ValueError(f"validation loss must be finite, got {val_loss!r}")
        if self.previous is not None and val_loss > self.previous:
            self.rises += 1
        else:
            self.rises = 0
        self.previous = val_loss
        return self.rises >= self.patience

    def state_dict(self) -> dict[str, Any]:
        """Plain-value state for checkpoints."""
        return {"patience": self.patience, "previous": self.previous, "rises": self.rises}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        self.patience = int(state["patience"])
        self.previous = None if state["previous"] is None else float(state["previous"])
        self.rises = int(state["rises"])


def train(
    model_name: str,
    config: Any,
    data: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    scheme: str = "regular",
    options: TrainOptions | None = None,
) -> TrainResult:
    """Train ``model_name`` on a resampled store and write a run directory.

    Parameters
    ----------
    model_name : str
        A name from :data:`nowcast.models.MODEL_NAMES`.
    config : str, path or ExperimentConfig
        Config name (``small``, ``hko7``, ``mnist``), YAML path or loaded config; its
        ``train:`` mapping gives the :class:`TrainSettings`.
    data : path or sequence of paths
        Resampled Zarr store(s) (docs/contracts.md, Resampled schema); several are trained
        on together, optionally through random crops (:mod:`nowcast.training.stores`).
    out_dir : path
        Run directory (created; see the module docstring for its layout). If it already
        holds ``last.pt``, ``options.resume`` must be True.
    scheme : str
        Sampling scheme (:func:`pipeline.sampling.get_scheme`): ``regular``,
        ``irregular_input``, ``irregular_target`` or ``irregular``.
    options : TrainOptions, optional
        Seed, resume, device, budget and overrides.

    Returns
    -------
    TrainResult

    Raises
    ------
    ValueError
        Bad arguments, a checkpoint that does not match the request, a regular-only model
        with an irregular scheme, empty splits.
    TrainingDivergedError
        NaN or inf in the loss or gradients.
    """
    from nowcast.models import get_model

    options = options or TrainOptions()
    cfg = _resolve_config(config)
    settings = TrainSettings.from_mapping(
        getattr(cfg, "train", None),
        max_epochs=options.epochs,
        iters_per_epoch=options.iters_per_epoch,
        batch_size=options.batch_size,
        loss=options.loss,
        lr=options.lr,
        val_samples=options.val_samples,
    )
    device = _resolve_device(options)
    dist_info = _init_distributed(device.type)
    try:
        if dist_info.world > 1 and device.type == "cuda":
            device = torch.device("cuda", dist_info.local_rank)
            torch.cuda.set_device(device)
        if settings.batch_size % dist_info.world:
            raise ValueError(
                f"batch_size {settings.batch_size} (global) is not divisible by the "
                f"{dist_info.world} processes"
            )
        _seed_everything(options.seed)
        model = get_model(model_name, cfg)
        if scheme != "regular" and not getattr(model, "continuous_time", False):
            raise ValueError(
                f"model {model_name!r} works on regular time steps only; use scheme "
                f"'regular' (got {scheme!r}) or a continuous-time model"
            )
        # Lagrangian models read the store's motion fields instead of estimating motion
        # again for every sample (they estimate it themselves when the store has none)
        train_ds, val_ds, fingerprint, grid, _ = training_data(
            as_paths(data),
            scheme,
            cfg,
            options,
            motion_capable=bool(getattr(model, "full_resolution", False)),
        )
        cadence = float(getattr(cfg, "cadence_minutes", 6.0))
        check_store(  # the config's cadence against the stores' (motion adapted below)
            {"network_pixel_km": grid["network_pixel_km"], "cadence_minutes": cadence},
            grid,
            continuous_time=bool(getattr(model, "continuous_time", False)),
            run_name=f"configuration {getattr(cfg, 'name', '')!r}",
        )
        adapt_model(model, grid["cadence_minutes"])
        init = init_from_run(model, model_name, options, grid)
        return _fit(
            model=model,
            model_name=model_name,
            config_dict=_config_to_dict(cfg),
            config_name=str(getattr(cfg, "name", "")),
            train_ds=train_ds,
            val_ds=val_ds,
            out_dir=Path(out_dir),
            settings=settings,
            options=options,
            scheme=scheme,
            fingerprint=fingerprint,
            device=device,
            dist_info=dist_info,
            extra_info={"grid": grid, "init": init},
        )
    finally:
        if dist_info.initialised_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def _fit(
    *,
    model: torch.nn.Module,
    model_name: str,
    config_dict: dict[str, Any],
    config_name: str,
    train_ds,
    val_ds,
    out_dir: Path,
    settings: TrainSettings,
    options: TrainOptions,
    scheme: str,
    fingerprint: dict[str, Any],
    device: torch.device,
    dist_info: _Dist,
    extra_info: Mapping[str, Any] | None = None,
) -> TrainResult:
    from pipeline.console.progress import progress_bar as tqdm

    if len(train_ds) == 0:
        raise ValueError(f"the training split {options.train_split!r} has no samples")
    if len(val_ds) == 0:
        raise ValueError(f"the validation split {options.val_split!r} has no samples")
    out_dir.mkdir(parents=True, exist_ok=True)
    last_path = out_dir / LAST_CHECKPOINT
    best_path = out_dir / BEST_CHECKPOINT

    model.to(device)
    loss_fn = get_loss(settings.loss)
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=settings.lr,
        betas=tuple(settings.betas),
        weight_decay=settings.weight_decay,
    )
    scheduler = get_schedule(settings.lr_schedule)(optimizer, settings)
    scaler = torch.amp.GradScaler("cuda", enabled=options.amp)
    stopper = EarlyStopping(settings.early_stopping_patience)
    history: list[dict[str, Any]] = []
    best_val = math.inf
    best_epoch: int | None = None
    start_epoch = 0
    stopped_reason = ""

    if last_path.exists() and not options.resume:
        raise ValueError(
            f"{out_dir} already holds a checkpoint (last.pt); pass resume=True (--resume) to "
            f"continue it or choose another run directory"
        )
    if options.resume:
        if not last_path.exists():
            raise ValueError(f"cannot resume: {last_path} does not exist")
        ckpt = _load_checkpoint(last_path)
        _check_resumable(ckpt, model_name, config_dict, settings, scheme, fingerprint, options)
        model.load_state_dict(ckpt["model_state"])
        optimizer.load_state_dict(ckpt["optimizer_state"])
        scheduler.load_state_dict(ckpt["scheduler_state"])
        scaler.load_state_dict(ckpt["scaler_state"])
        stopper.load_state_dict(ckpt["early_stopping"])
        history = [dict(row) for row in ckpt["history"]]
        best_val = float(ckpt["best_val_loss"])
        best_epoch = ckpt["best_epoch"]
        start_epoch = int(ckpt["epoch"])
        _set_rng_state(ckpt["rng"], device)
        if ckpt["status"] == "early_stopping":
            stopped_reason = "early_stopping"

    net: torch.nn.Module = model
    if dist_info.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    per_rank = settings.batch_size // dist_info.world
    n_needed = settings.iters_per_epoch * settings.batch_size
    val_idx = _val_indices(len(val_ds), settings.val_samples)[dist_info.rank :: dist_info.world]
    deadline = (
        None
        if options.time_budget_minutes is None
        else time.monotonic() + 60.0 * float(options.time_budget_minutes)
    )
    run_info = {
        "model_name": model_name,
        "config_name": config_name,
        "scheme": scheme,
        "seed": options.seed,
        "settings": settings.to_dict(),
        "data_fingerprint": fingerprint,
        "world_size": dist_info.world,
        "device": device.type,
        "amp": options.amp,
        "train_split": options.train_split,
        "val_split": options.val_split,
        "split_fractions": [float(f) for f in options.split_fractions],
        "stride": int(options.stride),
        "options": dataclasses.asdict(options),
        "train_samples": len(train_ds),
        "val_samples": len(_val_indices(len(val_ds), settings.val_samples)),
        **dict(extra_info or {}),
    }

    self_trained = bool(getattr(model, "trains_itself", False))
    epoch = start_epoch
    try:
        while not stopped_reason:
            if epoch >= settings.max_epochs:
                stopped_reason = "max_epochs"
                break
            # at least one epoch per invocation, so a budget always leaves a checkpoint
            if epoch > start_epoch and _out_of_time(deadline, dist_info, device):
                stopped_reason = "time_budget"
                break
            epoch += 1
            order = _epoch_order(len(train_ds), n_needed, options.seed, epoch)
            order = order.reshape(settings.iters_per_epoch, settings.batch_size)
            mine = order[:, dist_info.rank * per_rank : (dist_info.rank + 1) * per_rank].ravel()
            loader = torch.utils.data.DataLoader(
                train_ds,
                batch_size=per_rank,
                sampler=_IndexSampler(mine),
                num_workers=settings.num_workers,
                multiprocessing_context=_worker_context(settings.num_workers),
                generator=torch.Generator().manual_seed(options.seed * 100_003 + epoch),
                pin_memory=device.type == "cuda",
            )
            net.train()
            t0 = time.perf_counter()
            loss_sum, steps, truncated = 0.0, 0, False
            usage: list[torch.Tensor] | None = None
            bar = tqdm(
                total=settings.iters_per_epoch,
                desc=f"epoch {epoch}/{settings.max_epochs}",
                unit="step",
                disable=not (options.progress and dist_info.main),
                leave=False,
            )
            for step, batch in enumerate(loader, start=1):
                x, y, t_in, t_out, m_in, m_out, *extra = _to_device(batch, device)
                with torch.autocast(
                    device_type=device.type, dtype=torch.float16, enabled=options.amp
                ):
                    if self_trained:
                        out = net(x, t_in, t_out, input_mask=m_in, target=y, target_mask=m_out)
                        loss, usage = out["loss"].float(), _add_usage(usage, out["usage"])
                    else:
                        pred = net(x, t_in, t_out, input_mask=m_in, **_extra_inputs(extra))
                        loss = loss_fn(pred.float(), y, m_out, settings.loss_weights)
                out_of_time = deadline is not None and time.monotonic() >= deadline
                total, flag = _all_sum(
                    [float(loss.detach()), float(out_of_time)], dist_info, device
                )
                global_loss = total / dist_info.world
                if not math.isfinite(global_loss):
                    raise TrainingDivergedError(
                        _diverged_message("training loss", global_loss, epoch, step, last_path)
                    )
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(
                    model.parameters(), settings.grad_clip or math.inf
                )
                if not options.amp and not torch.isfinite(grad_norm):
                    raise TrainingDivergedError(
                        _diverged_message("gradient norm", float(grad_norm), epoch, step, last_path)
                    )
                scaler.step(optimizer)
                scaler.update()
                loss_sum += global_loss
                steps = step
                elapsed = time.perf_counter() - t0
                bar.update(1)
                bar.set_postfix(
                    loss=f"{global_loss:.4g}",
                    samples_s=f"{steps * settings.batch_size / max(elapsed, 1e-9):.1f}",
                )
                if flag > 0 and step < settings.iters_per_epoch:
                    truncated = True
                    break
            bar.close()
            train_seconds = time.perf_counter() - t0
            del loader

            val = _validate(
                net, val_ds, val_idx, per_rank, loss_fn, settings, device, options, dist_info
            )
            if not math.isfinite(val["val_loss"]):
                raise TrainingDivergedError(
                    _diverged_message("validation loss", val["val_loss"], epoch, steps, last_path)
                )
            lr_used = float(optimizer.param_groups[0]["lr"])
            _schedule_step(scheduler, val["val_loss"])
            is_best = val["val_loss"] < best_val
            if is_best:
                best_val, best_epoch = val["val_loss"], epoch
            stop = stopper.step(val["val_loss"])
            row = {
                "epoch": epoch,
                "steps": steps,
                "samples": steps * settings.batch_size,
                "train_loss": loss_sum / max(steps, 1),
                **val,
                "lr": lr_used,
                "train_seconds": train_seconds,
                "samples_per_s": steps * settings.batch_size / max(train_seconds, 1e-9),
                "best": bool(is_best),
                "truncated": bool(truncated),
            }
            if usage is not None:
                row["dead_codes"] = " ".join(f"{int((u == 0).sum())}/{u.numel()}" for u in usage)
                if dist_info.main:
                    tqdm.write(f"epoch {epoch}: unused codewords per layer {row['dead_codes']}")
            history.append(row)
            if stop:
                stopped_reason = "early_stopping"
            elif truncated:
                stopped_reason = "time_budget"
            if dist_info.main:
                if is_best:
                    save_best_checkpoint(
                        best_path,
                        model_name=model_name,
                        model=model,
                        config_dict=config_dict,
                        meta={**run_info, "epoch": epoch, "val_loss": val["val_loss"]},
                    )
                save_last_checkpoint(
                    last_path,
                    model_name=model_name,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    scaler=scaler,
                    early_stopping=stopper.state_dict(),
                    rng=_rng_state(device),
                    epoch=epoch,
                    status=stopped_reason or "running",
                    history=history,
                    best_val_loss=best_val,
                    best_epoch=best_epoch,
                    config_dict=config_dict,
                    settings=settings,
                    data_fingerprint=fingerprint,
                    meta=run_info,
                )
                _write_metrics(
                    out_dir, history, run_info, best_epoch, best_val, stopped_reason, plot=False
                )
    except TrainingDivergedError:
        stopped_reason = "diverged"
        raise
    finally:
        # the loss curve is drawn once per invocation (also after a divergence), the
        # tables after every epoch
        if dist_info.main and history:
            _write_metrics(
                out_dir, history, run_info, best_epoch, best_val, stopped_reason, plot=True
            )
    return TrainResult(
        run_dir=out_dir,
        epochs_completed=epoch,
        best_epoch=best_epoch,
        best_val_loss=best_val,
        stopped_reason=stopped_reason,
        history=history,
    )


def _add_usage(total: list[torch.Tensor] | None, step: list[torch.Tensor]) -> list[torch.Tensor]:
    """Codeword counts of one step added to the epoch's (per layer)."""
    step = [u.detach().cpu() for u in step]
    return step if total is None else [a + b for a, b in zip(total, step, strict=True)]


def _diverged_message(what: str, value: float, epoch: int, step: int, last_path: Path) -> str:
    keep = (
        f"{last_path} keeps the last good state"
        if last_path.exists()
        else "no checkpoint had been written yet"
    )
    return (
        f"training diverged: {what} is {value} at epoch {epoch}, step {step}; the run is "
        f"stopped and {keep}. Lower the learning rate or check the data."
    )


@torch.no_grad()
def _validate(
    net: torch.nn.Module,
    val_ds,
    indices: np.ndarray,
    batch_size: int,
    loss_fn: Callable[..., torch.Tensor],
    settings: TrainSettings,
    device: torch.device,
    options: TrainOptions,
    dist_info: _Dist,
) -> dict[str, float]:
    """Mean per-sample validation loss, MSE and MAE (all ranks get the same figures)."""
    net.eval()
    loader = torch.utils.data.DataLoader(
        val_ds,
        batch_size=batch_size,
        sampler=_IndexSampler(indices),
        num_workers=settings.num_workers,
        multiprocessing_context=_worker_context(settings.num_workers),
        generator=torch.Generator().manual_seed(0),
    )
    sums = [0.0, 0.0, 0.0, 0.0]
    for batch in loader:
        x, y, t_in, t_out, m_in, m_out, *extra = _to_device(batch, device)
        own = None
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=options.amp):
            if getattr(net, "trains_itself", False):
                # the model's own objective, per sample; its prediction is teacher-forced
                own = [
                    net(
                        *(v[i : i + 1] for v in (x, t_in, t_out)),
                        input_mask=m_in[i : i + 1],
                        target=y[i : i + 1],
                        target_mask=m_out[i : i + 1],
                    )  # fmt: skip
                    for i in range(x.shape[0])
                ]
                pred = torch.cat([o["prediction"] for o in own])
            else:
                pred = net(x, t_in, t_out, input_mask=m_in, **_extra_inputs(extra))
        pred = pred.float()
        for i in range(pred.shape[0]):
            p, t, m = pred[i : i + 1], y[i : i + 1], m_out[i : i + 1]
            if own is not None:
                sums[0] += float(own[i]["loss"])
            else:
                sums[0] += float(loss_fn(p, t, m, settings.loss_weights))
            sums[1] += float(masked_mse(p, t, m))
            sums[2] += float(masked_mae(p, t, m))
            sums[3] += 1.0
    total = _all_sum(sums, dist_info, device)
    n = max(total[3], 1.0)
    return {"val_loss": total[0] / n, "val_mse": total[1] / n, "val_mae": total[2] / n}

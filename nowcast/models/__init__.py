"""Nowcasting networks behind one registry: ``get_model(name, config)``.

Call contract (all models; :class:`nowcast.contract.Nowcaster`, docs/contracts.md)::

    y = model(x, t_in, t_out, input_mask=None)

- ``x``: (B, T_in, 1, H, W) input frames on the p/255 scale (0..1);
- ``t_in``: (B, T_in), ``t_out``: (B, T_out) minutes relative to the last input frame;
- ``input_mask``: optional (B, T_in, 1, H, W), 1 = valid pixel (masked pixels enter as 0);
- ``y``: (B, T_out, 1, H, W) forecast frames, p/255.

``model.continuous_time`` tells whether the model uses the real time gaps. ConvGRU and TrajGRU
do not: they raise ValueError on irregular times unless built with
``ignore_irregular_times=True``. The ODE models produce a frame at any time after the last
input (see :mod:`nowcast.models.encoder_forecaster`).
"""

from __future__ import annotations

from torch import nn

from nowcast.configs import MODEL_NAMES, ExperimentConfig, ModelConfig

__all__ = ["MODEL_NAMES", "count_parameters", "get_model"]

_FLAGS = {
    "convgru": {"cell": "convgru"},
    "convlstm": {"cell": "convlstm"},
    "trajgru": {"cell": "trajgru"},
    "trajgru_attention": {"cell": "trajgru", "zigzag": True, "mea": True, "mda": True},
    "trajgru_ode": {"cell": "trajgru", "zigzag": True, "mea": True, "ode": True},
    "trajgru_attention_ode": {
        "cell": "trajgru",
        "zigzag": True,
        "mea": True,
        "mda": True,
        "ode": True,
    },
}


def get_model(
    name: str,
    config: ExperimentConfig | ModelConfig,
    ignore_irregular_times: bool = False,
) -> nn.Module:
    """Build a network by name.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES` (case-insensitive).
    config : ExperimentConfig or ModelConfig
        An experiment configuration (its ``model(name)`` entry is used) or a model's own.
    ignore_irregular_times : bool
        For the regular-only models (convgru, trajgru): accept irregular times, making one
        recurrent step per requested output. Ignored by the continuous-time models.

    Returns
    -------
    torch.nn.Module
        With the call contract of this package and a ``continuous_time`` attribute.

    Raises
    ------
    ValueError
        Unknown *name* (the message lists the valid names) or inconsistent configuration.
    """
    key = str(name).lower()
    if key not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
    if isinstance(config, ExperimentConfig):
        mcfg = config.model(key)
    elif isinstance(config, ModelConfig):
        mcfg = config
        if mcfg.name != key:
            import dataclasses

            mcfg = dataclasses.replace(mcfg, name=key)
    else:
        raise ValueError(
            f"config must be an ExperimentConfig or ModelConfig, got {type(config).__name__}"
        )
    if key == "shrvqvae":
        if mcfg.lagrangian:
            raise ValueError(
                "shrvqvae has no Lagrangian mode (its members are decoded code samples); "
                "set lagrangian: false for it"
            )
        from nowcast.models.shrvqvae import SHRVQVAE

        return SHRVQVAE(mcfg)
    if key == "vidode":
        from nowcast.models.vidode import VidODE

        net: nn.Module = VidODE(mcfg)
        stride = 4
    else:
        from nowcast.models.encoder_forecaster import EncoderForecaster

        net = EncoderForecaster(mcfg, ignore_irregular_times=ignore_irregular_times, **_FLAGS[key])
        stride = mcfg.total_stride
    if not mcfg.lagrangian:
        return net
    from nowcast.models.lagrangian import LagrangianNowcaster

    if mcfg.image_size % stride:
        raise ValueError(
            f"a Lagrangian {key} needs a network grid (image_size {mcfg.image_size}) that is a "
            f"multiple of its down-sampling stride {stride}"
        )
    return LagrangianNowcaster(
        net,
        grid=mcfg.image_size,
        cadence_minutes=mcfg.cadence_minutes,
        motion_method=mcfg.lagrangian_motion,
        gate=not (key != "vidode" and mcfg.residual),
        smoothing_leads=mcfg.out_frames,
        change_scale=mcfg.lagrangian_change_scale,
        prob_match=mcfg.lagrangian_prob_match,
        damping_scales=mcfg.lagrangian_damping_scales,
    )


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters of *model*."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)

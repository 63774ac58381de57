"""Experiment configurations: YAML data files and the small dataclasses they load into.

Three configurations ship with the package (``nowcast/configs/*.yaml``):

``hko7``
    HKO-7 downsized to 80 x 80, 10 frames in / 10 out, the channel and kernel recipe of
    Tables 5.2 / A.2 of the thesis (parameter counts checked by the tests).
``mnist``
    MovingMNIST 64 x 64, Tables 5.1 / A.1.
``small``
    A light CPU configuration (80 x 80 input, few channels, 5 in / 5 out) for demos and tests.
``small_lagrangian``, ``hko7_lagrangian``
    The ``small`` and ``hko7`` networks in Lagrangian mode (``ModelConfig.lagrangian``), 5 in /
    20 out (the HKO-7 benchmark setting); the demo trains ``small_lagrangian``.

A file may start from another with ``extends: NAME`` (a shipped name or a path relative to
the file): its mappings are merged key by key, the extending file winning.

A configuration file holds the experiment-wide facts (``image_size``, ``in_frames``,
``out_frames``, ``cadence_minutes``), a ``models`` mapping (``common`` settings plus
per-model overrides) and a free-form ``train`` mapping read by the training code.
:meth:`ExperimentConfig.model` returns the :class:`ModelConfig` of one model, which is what
the networks are built from (they never read a whole run configuration).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["CONFIG_NAMES", "MODEL_NAMES", "ExperimentConfig", "ModelConfig", "load_config"]

_CONFIG_DIR = Path(__file__).resolve().parent
CONFIG_NAMES: tuple[str, ...] = ("hko7", "mnist", "small", "small_lagrangian", "hko7_lagrangian")

MODEL_NAMES: tuple[str, ...] = (
    "convgru",
    "trajgru",
    "vidode",
    "trajgru_attention",
    "trajgru_ode",
    "trajgru_attention_ode",
    "convlstm",
    "shrvqvae",
)
"""Names of the networks a configuration can describe, built by
:func:`nowcast.models.get_model` (which re-exports this tuple)."""


@dataclass(frozen=True)
class ModelConfig:
    """Hyper-parameters of one network (one entry of a configuration's ``models`` mapping).

    Attributes
    ----------
    name : str
        Model name (one of :data:`MODEL_NAMES`).
    image_size : int
        Height and width of the frames, pixels.
    in_frames, out_frames : int
        Default numbers of input and output frames (the models accept other counts).
    cadence_minutes : float
        Regular frame spacing, minutes. Regular-only models check the times against it and the
        continuous-time models measure time in units of it.
    channels : tuple of int
        Hidden channels of recurrent levels 1, 2, 3 (bottom/high resolution to top).
    down : tuple of (in, out, kernel, stride, padding)
        Encoder down-sampling convolutions (conv + LeakyReLU(0.2)), one per level.
    up : tuple of (in, out, kernel, stride, padding, output_padding)
        Forecaster up-sampling transposed convolutions (deconv + LeakyReLU(0.2)): after level 3,
        after level 2 and after level 1 (the last one leads to the output head).
    head_channels : int
        Channels of the output head (``up[-1]`` output); a 1x1 conv maps them to one frame.
    links : tuple of int
        TrajGRU links L per level.
    flow_kernel : int
        Kernel of the three TrajGRU flow-net convolutions.
    top_skip : bool
        Add the 3x3 conv (channels[2] -> head_channels) from the top forecaster state to the
        output head (the conv that completes the thesis's baseline counts, see docs/models.md).
    zigzag_kernel, zigzag_stride : int
        Kernel and stride of the zigzag resampling (de)convolutions between levels 3 and 1.
    mea_levels, mda_levels : tuple of int
        Levels (1-based) with Motion-based Encoding / Decoding Attention (attention models).
    mda_window : int
        Sliding window T of states seen by the decoding attention (at most ``in_frames``).
    ode_hidden : tuple of int
        Hidden channels of the ODE function per level (ODE models).
    ode_layers : int
        Convolutions of the ODE function (3x3, tanh between and after hidden ones).
    ode_step_minutes : float
        Fixed Euler step of the latent ODE, minutes.
    vidode_channels : tuple of int
        Vid-ODE conv encoder channels (last = latent channels).
    vidode_ode_hidden : int
        Vid-ODE ODE-function hidden channels.
    vidode_rtol, vidode_atol : float
        Tolerances of Vid-ODE's dopri5 decoder.
    residual : bool
        Encoder-forecaster models only: the output head predicts the *change* from the last
        input frame, ``y(t) = x(t_last) + head(t)``, instead of the frame itself. Not in the
        thesis (its tables use ``False``, the default); the CPU ``small`` configuration turns
        it on so that a few minutes of training start from persistence instead of from an
        empty field (see docs/models.md).
    lagrangian : bool
        Run the network in the frame moving with the rain
        (:class:`nowcast.models.lagrangian.LagrangianNowcaster`): inputs advected to the issue
        time, the network predicts the change advection cannot explain on its
        ``image_size`` grid, and the forecast is the last frame plus that change advected to
        each lead, on the input's full grid. Not in the thesis (default ``False``).
    lagrangian_motion : str
        Motion method (``pipeline.motion.get_motion``) used when no motion field is passed.
    lagrangian_change_scale : float
        Multiplier of the Lagrangian network's learned change (default 1). 0 leaves the
        extrapolation of the last frame with the learned scale damping only, and the
        network is not run (docs/results.md, "Real radar: the learned nowcast").
    lagrangian_prob_match : bool
        Give every lead of a Lagrangian forecast the value distribution of the last observed
        frame (probability matching, as S-PROG; evaluation only). Default False.
    lagrangian_damping_scales : tuple of float, optional
        Scales of the Lagrangian scale-damping terms in network pixels (0, the block mean,
        then Gaussian widths); None: ``(0, 1, 2, 4)``. Other scales change the weight table's
        shape, so a run's weights fit only its own scales.
    vq_channels : tuple of int
        S-HR-VQVAE: channels of the encoder's stride-2 convolutions (4x4), one per halving of
        the frame (the latent grid is ``image_size / 2 ** len(vq_channels)``); the decoder
        mirrors them.
    vq_latent_dim : int
        S-HR-VQVAE: latent (codeword) channels ``D``.
    vq_layers, vq_codebook_size : int
        S-HR-VQVAE: hierarchy layers ``n`` and codewords ``M`` per codebook (layer ``i`` has
        ``M**(i-1)`` codebooks, ``M**i`` codewords).
    vq_betas : tuple of float
        S-HR-VQVAE: ``beta_0 .. beta_n`` of eqs. 4-5 (``vq_layers + 1`` values).
    pixelcnn_channels, pixelcnn_blocks, pixelcnn_kernel, pixelcnn_heads : int
        S-HR-VQVAE: ST-PixelCNN width, gated masked blocks, masked kernel, attention heads.
    pixelcnn_context : int
        S-HR-VQVAE: previous frames seen by the ST-PixelCNN for each frame.
    shrvqvae_training : str
        S-HR-VQVAE: ``disjoint`` or ``joint`` (eq. 9).
    joint_lambda : float
        S-HR-VQVAE: lambda of eq. 9 (0.11 in the paper).
    ensemble_members : int
        S-HR-VQVAE: members drawn when none are asked for (the plain call's mean).
    sample_temperature : float
        S-HR-VQVAE: softmax temperature of the sampling (1: the model's distribution).
    """

    name: str
    image_size: int = 80
    in_frames: int = 10
    out_frames: int = 10
    cadence_minutes: float = 6.0
    channels: tuple[int, ...] = (96, 96, 128)
    down: tuple[tuple[int, ...], ...] = (
        (1, 96, 3, 2, 1),
        (96, 96, 3, 2, 1),
        (96, 128, 3, 2, 1),
    )
    up: tuple[tuple[int, ...], ...] = (
        (128, 96, 4, 2, 1, 0),
        (96, 96, 4, 2, 1, 0),
        (96, 32, 3, 2, 1, 1),
    )
    head_channels: int = 32
    links: tuple[int, ...] = (11, 11, 11)
    flow_kernel: int = 3
    top_skip: bool = True
    zigzag_kernel: int = 4
    zigzag_stride: int = 4
    mea_levels: tuple[int, ...] = (2, 3)
    mda_levels: tuple[int, ...] = (2, 1)
    mda_window: int = 10
    ode_hidden: tuple[int, ...] = (96, 96, 128)
    ode_layers: int = 4
    ode_step_minutes: float = 3.0
    vidode_channels: tuple[int, ...] = (32, 64, 128)
    vidode_ode_hidden: int = 128
    vidode_rtol: float = 1e-3
    vidode_atol: float = 1e-4
    residual: bool = False
    lagrangian: bool = False
    lagrangian_motion: str = "lk"
    lagrangian_change_scale: float = 1.0
    lagrangian_prob_match: bool = False
    lagrangian_damping_scales: tuple[float, ...] | None = None
    vq_channels: tuple[int, ...] = (32, 64)
    vq_latent_dim: int = 8
    vq_layers: int = 3
    vq_codebook_size: int = 8
    vq_betas: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
    pixelcnn_channels: int = 64
    pixelcnn_blocks: int = 4
    pixelcnn_kernel: int = 3
    pixelcnn_heads: int = 4
    pixelcnn_context: int = 4
    shrvqvae_training: str = "disjoint"
    joint_lambda: float = 0.11
    ensemble_members: int = 4
    sample_temperature: float = 1.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a mapping, converting lists to tuples; unknown keys raise ValueError."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(
                f"unknown model setting(s) {unknown}; expected a subset of {sorted(names)}"
            )
        return cls(**{k: _to_tuple(v) for k, v in data.items()})

    @property
    def total_stride(self) -> int:
        """Product of the down-sampling strides (H and W must be multiples of it)."""
        s = 1
        for spec in self.down:
            s *= int(spec[3])
        return s


@dataclass(frozen=True)
class ExperimentConfig:
    """One experiment configuration (see the module docstring).

    Attributes
    ----------
    name : str
        Configuration name.
    image_size, in_frames, out_frames : int
        Frame size (pixels) and sequence lengths.
    cadence_minutes : float
        Regular frame spacing, minutes.
    models : dict
        Raw ``models`` mapping (``common`` plus per-model overrides).
    train : dict
        Free-form training settings (lr, betas, batch_size, max_epochs, ...).
    thesis_parameters : dict
        Parameter counts printed in the thesis for this configuration (model name -> int).
    """

    name: str
    image_size: int
    in_frames: int
    out_frames: int
    cadence_minutes: float = 6.0
    models: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    thesis_parameters: dict[str, int] = field(default_factory=dict)

    def model(self, name: str) -> ModelConfig:
        """Return the :class:`ModelConfig` of model *name* (``common`` merged with overrides).

        Raises
        ------
        ValueError
            If *name* is not a known model name.
        """
        key = str(name).lower()
        if key not in MODEL_NAMES:
            raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")
        merged: dict[str, Any] = {
            "image_size": self.image_size,
            "in_frames": self.in_frames,
            "out_frames": self.out_frames,
            "cadence_minutes": self.cadence_minutes,
        }
        merged.update(self.models.get("common", {}) or {})
        merged.update(self.models.get(key, {}) or {})
        merged["name"] = key
        return ModelConfig.from_dict(merged)


def _to_tuple(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_to_tuple(v) for v in value)
    return value


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Recursive merge of mappings: *over* wins, nested mappings are merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    """A configuration file's mapping, with ``extends: NAME`` resolved (base first)."""
    with path.open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"configuration {path} holds {type(data).__name__}, expected a mapping")
    base = data.pop("extends", None)
    if base is None:
        return data
    if str(base).lower() in CONFIG_NAMES:
        base_path = _CONFIG_DIR / f"{str(base).lower()}.yaml"
    else:
        base_path = (path.parent / str(base)).resolve()
    if base_path in seen or base_path == path.resolve():
        raise ValueError(f"configuration {path} extends {base!r} in a circle")
    if not base_path.is_file():
        raise ValueError(
            f"configuration {path} extends {base!r}: not one of {', '.join(CONFIG_NAMES)} "
            "and not an existing file"
        )
    return _merge(_read_yaml(base_path, (*seen, path.resolve())), data)


def load_config(name_or_path: str | Path) -> ExperimentConfig:
    """Load an experiment configuration by name (``hko7``, ``mnist``, ``small``) or YAML path.

    Parameters
    ----------
    name_or_path : str or Path
        A shipped configuration name, or the path of a YAML file with the same layout.

    Returns
    -------
    ExperimentConfig

    Raises
    ------
    ValueError
        Unknown name / missing file (message lists the shipped names), or a file whose
        content is not a mapping with the required keys.
    """
    text = str(name_or_path)
    if text.lower() in CONFIG_NAMES:
        path = _CONFIG_DIR / f"{text.lower()}.yaml"
    else:
        path = Path(text)
        if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
            raise ValueError(
                f"unknown configuration {text!r}: not one of {', '.join(CONFIG_NAMES)} "
                "and not an existing .yaml file"
            )
    data = _read_yaml(path, seen=())
    required = ("name", "image_size", "in_frames", "out_frames")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"configuration {path} lacks required key(s) {missing}")
    known = {f.name for f in dataclasses.fields(ExperimentConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"configuration {path} has unknown key(s) {unknown}; known: {sorted(known)}"
        )
    cfg = ExperimentConfig(
        name=str(data["name"]),
        image_size=int(data["image_size"]),
        in_frames=int(data["in_frames"]),
        out_frames=int(data["out_frames"]),
        cadence_minutes=float(data.get("cadence_minutes", 6.0)),
        models=dict(data.get("models") or {}),
        train=dict(data.get("train") or {}),
        thesis_parameters={k: int(v) for k, v in (data.get("thesis_parameters") or {}).items()},
    )
    return cfg

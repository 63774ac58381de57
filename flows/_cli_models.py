"""Subcommands of the ``nowcast`` CLI for this area (see :mod:`flows.cli`): ``nowcast models``."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's subcommands to *app*."""

    @app.command("models")
    def models_command(
        config: str = typer.Option(
            "hko7", "--config", "-c", help="Configuration name (hko7, mnist, small) or YAML path."
        ),
    ) -> None:
        """Print each model's parameter count beside the thesis's figure and the deviation."""
        from nowcast.configs import load_config
        from nowcast.models import MODEL_NAMES, count_parameters, get_model

        try:
            cfg = load_config(config)
        except ValueError as err:
            raise typer.BadParameter(str(err), param_hint="--config") from err
        typer.echo(
            f"configuration {cfg.name}: {cfg.image_size}x{cfg.image_size}, "
            f"{cfg.in_frames} in / {cfg.out_frames} out"
        )
        typer.echo(f"{'model':<24}{'parameters':>14}{'thesis':>14}{'deviation':>12}")
        for name in MODEL_NAMES:
            n = count_parameters(get_model(name, cfg))
            ref = cfg.thesis_parameters.get(name)
            if ref:
                dev = f"{100.0 * (n - ref) / ref:+.2f}%"
                ref_s = f"{ref:,}"
            else:
                dev, ref_s = "-", "-"
            typer.echo(f"{name:<24}{n:>14,}{ref_s:>14}{dev:>12}")

"""Nowcasting models, training, evaluation, baselines and forecasts."""

import pipeline  # noqa: F401,E402  (first: pysteps then imports silently, pipeline.console)

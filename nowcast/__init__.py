"""Nowcasting models, training, evaluation, baselines and forecasts."""

"""Prefect flows and tasks (thin wrappers over ``pipeline``, ``nowcast`` and ``products``),
the scheduled deployment and the ``nowcast`` CLI."""

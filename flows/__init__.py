"""Prefect flows, forecast products, maps, the operator dashboard and the CLI."""

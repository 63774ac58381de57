"""Radar archive plumbing: the HKO-7 layout, a synthetic archive, ingest into Zarr,
resampling onto a regular time grid, sample indices and a torch Dataset."""

from pipeline.console.quiet_pysteps import quiet_pysteps_import

quiet_pysteps_import()  # before any pysteps import: no "configuration file found" print

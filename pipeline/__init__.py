"""Radar archive plumbing: the HKO-7 layout, a synthetic archive, ingest into Zarr,
resampling onto a regular time grid, sample indices and a torch Dataset."""

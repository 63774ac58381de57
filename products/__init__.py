"""Forecast products for operators, between ``nowcast`` (forecasts) and ``flows`` (Prefect).

Plain functions, importable and testable without Prefect; ``flows`` wraps them in tasks
and flows. Layers: ``pipeline`` -> ``nowcast`` -> ``products`` -> ``flows`` (no import
runs back up).

Modules
-------
``products.cf``
    CF-1.10 NetCDF product of a forecast: attributes, writer, reader, offline checker.
``products.archive``
    Zarr (Icechunk) archive of the published forecasts, keyed by issue time.
``products.verify``
    CSI of a published forecast against the observations that came true.
``products.maps``
    Offline cartopy maps (PNG) and the animated loop (GIF).
``products.prob_maps``
    Exceedance-probability maps of an ensemble forecast and their dashboard layers.
``products.run_files``
    The files of one run directory (NetCDF, maps, loop, ``run.json``).
``products.site``
    Atomic publishing into a site, with locking, retention and the status/scores logs
    (:mod:`products._site_journal` undoes a publish that fails half-way).
``products.dashboard``
    The static operator dashboard regenerated from the site's JSON files, and its server.
``products.cycle``
    One forecast cycle: issue time, forecast, verification of an earlier forecast, publish.
``products.replay``
    Replay of an HKO-7 archive into a store as a live feed.
``products.soak``
    Fault-injection soak of the forecast cycle on a replayed archive.
"""

"""Fault-injection soak of the forecast cycle (:mod:`products.soak`); prints ONE JSON line.

Figures: ``cycles``; ``faults`` injected by kind; ``cycles_ok`` / ``cycles_skipped`` /
``cycles_failed``; ``blocked_after_fault`` (cycles that did not end as their input window
says although no fault hit them; goal 0); ``frames_arrived`` and ``frames_lost`` (frames
that arrived readable but are not in the store at the end; goal 0);
``frames_duplicated`` (goal 0); ``site_store_mismatches`` (goal 0);
``cycle_seconds_median`` / ``cycle_seconds_worst``
(a killed cycle includes its child process's start); ``seconds`` in all.

Usage::

    python benchmarks/soak.py [--cycles 240] [--seed 0] [--rate 0.15]
                              [--baseline persistence] [--workdir DIR] [--object-storage]

The default is one day at 6 minutes (240 cycles). ``--object-storage`` puts the store in a
moto bucket on 127.0.0.1 behind a fault proxy (:mod:`products.soak_s3`) and adds endpoint
outages, slow responses and a concurrent writer to the faults (``storage`` in the JSON
line says which). With ``--workdir`` the archives, store
and site are kept there (it must be new or empty); otherwise a temporary directory is
used and removed.
"""

from __future__ import annotations

import argparse
import json
import tempfile


def main() -> None:
    """Run the soak and print its summary as one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=240)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=float, default=0.15, help="Fault probability a tick.")
    parser.add_argument("--baseline", default="persistence")
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--progress", action="store_true", help="One line per cycle.")
    parser.add_argument(
        "--object-storage", action="store_true", help="The store in a moto bucket, with faults."
    )
    args = parser.parse_args()

    from products.soak import run_soak
    from products.soak_s3 import run_object_storage_soak

    run = run_object_storage_soak if args.object_storage else run_soak
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        report = run(
            args.workdir or tmp,
            cycles=args.cycles,
            seed=args.seed,
            rate=args.rate,
            baseline=args.baseline,
            progress=args.progress,
        )
    summary = report.summary()
    summary.update(seed=args.seed, rate=args.rate, baseline=args.baseline)
    summary["storage"] = "s3 (moto, fault proxy)" if args.object_storage else "local disk"
    if report.blocked:
        summary["blocked"] = [f"{c.now} {c.status}: {c.reason}" for c in report.blocked[:5]]
    if report.mismatches:
        summary["mismatches"] = report.mismatches[:5]
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

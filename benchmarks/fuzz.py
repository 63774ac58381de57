"""Fuzz the readers of the front door with mutated files; prints ONE JSON line.

Every reader of :data:`tests.pipeline.fuzzing.READERS` (HKO-7 PNG frame and mask, the
catalogue, ODIM, KNMI, BoM, MeteoSwiss, FMI) gets ``--per-reader`` mutated copies of a
valid seed file (:func:`tests.pipeline.fuzzing.mutate`, choices from
``random.Random(--seed + i)``), each read in this process with the source's reader:

- ``inputs``: mutated files tried in all; ``per_reader``: how many each reader got and
  how they ended (``read``: returned; ``named``: refused with the project's error naming
  the file, i.e. skipped by an ingest; ``crash``: anything else, or more than
  ``MAX_TRACED_BYTES`` traced);
- ``crashes``: the number of crashes; ``examples``: the first few (reader, mutation,
  seed, error) to replay with ``--replay READER:SEED``;
- ``peak_traced_mb``: the largest memory one read took (tracemalloc);
- ``seconds``: wall-clock time.

Each reader runs in a child process, so that a C library aborting the process on a
malformed file (netCDF-C did, on an impossible dimension id) is counted as a crash,
with the input that caused it, instead of ending the run.

Goal (issue 25): at least 10,000 inputs, 0 crashes. Usage::

    python benchmarks/fuzz.py [--per-reader 1250] [--seed 0] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.pipeline.fuzzing import READERS, RandomChooser, mutate, try_read, write_seeds  # noqa: E402


def fuzz_one(name: str, seed_bytes: bytes, seed: int, folder: Path) -> tuple[str, object]:
    """Mutate and read one input; ``(mutation, outcome)``."""
    reader = READERS[name]
    path = folder / name / f"{seed}" / reader.file_name
    how = mutate(RandomChooser(seed), reader, seed_bytes, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning of a reader counts as its error
        out = try_read(reader, path)
    path.unlink(missing_ok=True)
    path.parent.rmdir()
    return how, out


def _run_reader(name: str, per_reader: int, seed0: int, folder: Path) -> dict:
    """Fuzz one reader in this process; its counts, crash examples and peak."""
    seeds = write_seeds(folder)
    counts = {"read": 0, "named": 0, "crash": 0}
    examples, peak = [], 0
    for i in range(per_reader):
        seed = seed0 * 1_000_000 + i
        print(seed, file=sys.stderr, flush=True)  # the last one names a hard crash
        how, out = fuzz_one(name, seeds[name], seed, folder)
        counts[out.status] += 1
        peak = max(peak, out.peak_bytes)
        if out.status == "crash" and len(examples) < 5:
            examples.append({"reader": name, "seed": seed, "mutation": how, "error": out.detail})
    return {"counts": counts, "examples": examples, "peak": peak}


def _reader_in_child(name: str, args: argparse.Namespace) -> dict:
    """:func:`_run_reader` in a child process: an abort of a C library is a crash too."""
    cmd = [sys.executable, __file__, "--child", name, "--per-reader", str(args.per_reader)]
    cmd += ["--seed", str(args.seed)] + (["--workdir", str(args.workdir)] if args.workdir else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    done = [ln for ln in proc.stderr.splitlines() if ln.strip().isdigit()]
    last = int(done[-1]) if done else -1
    n = len(done)
    return {
        "counts": {"read": 0, "named": max(n - 1, 0), "crash": 1},  # unknown split before
        "examples": [
            {
                "reader": name,
                "seed": last,
                "mutation": "?",
                "error": f"process died (exit {proc.returncode}) after {n} inputs: "
                f"{proc.stderr.strip().splitlines()[-1:]}",
            }
        ],  # fmt: skip
        "peak": 0,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-reader", type=int, default=1250)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--replay", default=None, help="READER:SEED: one input, its outcome")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    import pysteps.io.importers  # noqa: F401 - imported once, before any timing

    if args.child or args.replay:
        with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
            if args.replay:
                name, seed = args.replay.split(":")
                seeds = write_seeds(Path(tmp))
                how, out = fuzz_one(name, seeds[name], int(seed), Path(tmp))
                result = {"reader": name, "seed": int(seed), "mutation": how, **out.__dict__}
            else:
                result = _run_reader(args.child, args.per_reader, args.seed, Path(tmp))
        print(json.dumps(result))
        return result
    t0 = time.perf_counter()
    per, examples, peak = {}, [], 0
    for name in READERS:
        res = _reader_in_child(name, args)
        per[name] = res["counts"]
        examples += res["examples"]
        peak = max(peak, res["peak"])
    result = {
        "benchmark": "fuzz",
        "inputs": sum(sum(c.values()) for c in per.values()),
        "crashes": sum(c["crash"] for c in per.values()),
        "per_reader": per,
        "peak_traced_mb": round(peak / 2**20, 1),
        "seconds": round(time.perf_counter() - t0, 1),
        "examples": examples[:10],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

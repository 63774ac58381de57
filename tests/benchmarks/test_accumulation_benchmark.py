"""benchmarks/accumulation.py runs and prints one JSON line of the promised keys."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_accumulation_benchmark_prints_one_json_line():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, str(ROOT / "benchmarks" / "accumulation.py"), "--size", "64"]
    res = subprocess.run(cmd + ["--repeat", "1"], capture_output=True, text=True, env=env,
                         timeout=300, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1
    doc = json.loads(lines[0])
    assert doc["benchmark"] == "accumulation" and doc["size"] == 64 and doc["frames"] == 11
    assert {"advection_s", "sum_s", "motion_lk_s", "goal_advection_s", "ok"} <= set(doc)

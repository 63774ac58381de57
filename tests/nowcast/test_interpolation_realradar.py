"""Interpolation skill on a real radar event (skipped without the real-radar folder beside the checkout)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

_ROOT = Path(__file__).resolve().parents[2]  # the project's root; shared/realradar beside it
_CANDIDATES = [up / "shared" / "realradar" / "mch" / "20170131" for up in _ROOT.parents[:2]]
EVENT = next((p for p in _CANDIDATES if p.is_dir()), _CANDIDATES[0])


@pytest.mark.skipif(
    not EVENT.is_dir(), reason=f"real radar events not here ({EVENT}: a fresh clone has none)"
)
def test_advection_beats_linear_on_a_real_event(tmp_path):
    from nowcast.interpolation.skill import evaluate_interpolation

    store, out = tmp_path / "e.zarr", tmp_path / "e.r.zarr"
    for args in (
        ["ingest", EVENT, store, "--source", "mch"],
        ["resample", store, out, "--cadence", "5min", "--size", "120", "--no-progress"],
    ):
        res = CliRunner().invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, res.output
    table = evaluate_interpolation(out, gap_lengths=(1, 4), max_cases=4).set_index(
        ["method", "gap"]
    )
    assert (table["cases"] == 4).all()
    for gap in (1, 4):
        lin, adv = table.loc[("linear", gap)], table.loc[("advection", gap)]
        assert adv["B-MSE"] < lin["B-MSE"]
        assert adv["CSI_5"] > lin["CSI_5"]

"""Fault-injection soak (test-suite size): every cycle accounted for, nothing blocked or lost."""

from __future__ import annotations

import pytest

from products.soak import FAULT_KINDS, fault_schedule, run_soak

GAP_REASON = "3 consecutive input frames missing (more than 2 allowed)"


def test_fault_schedule_is_seeded_and_keeps_the_first_window_clean():
    a = fault_schedule(240, seed=3)
    assert a == fault_schedule(240, seed=3) and a != fault_schedule(240, seed=4)
    assert min(a) >= 5 and set(a.values()) == set(FAULT_KINDS)  # every kind, 240 ticks


@pytest.mark.slow  # about 20 s: 14 real cycles (ingest, forecast, maps, publish)
def test_soak_without_child_processes(tmp_path):
    faults = {5: "missing", 6: "corrupt", 7: "disk_full", 8: "frozen", 9: "truncated"}
    faults |= {10: "gap", 11: "gap", 12: "gap"}
    report = run_soak(tmp_path, cycles=14, faults=faults)
    statuses = [c.status for c in report.cycles]
    # ticks 0-1: fewer than 3 of the 5 input slots exist yet; 7: the disk is full;
    # 11-13: 00:54-01:12 missing (9 truncated, 10-12 the gap) -> 3, 4, 4 in a row
    assert statuses == ["skipped"] * 2 + ["ok"] * 5 + ["failed"] + ["ok"] * 3 + ["skipped"] * 3
    assert report.cycles[7].reason.startswith("OSError: [Errno 28] No space left on device")
    assert report.cycles[11].reason.startswith(GAP_REASON)
    for k in (12, 13):
        assert report.cycles[k].reason.startswith(GAP_REASON.replace("3", "4"))
    s = report.summary()
    assert s["faults"] == {
        "missing": 1, "gap": 1, "corrupt": 1, "truncated": 1, "frozen": 1,
        "kill_cycle": 0, "kill_ingest": 0, "disk_full": 1,
    }  # fmt: skip
    assert (s["blocked_after_fault"], s["frames_lost"], report.mismatches) == (0, 0, [])
    assert s["frames_arrived"] == 14 - 1 - 3 - 2  # missing, gap, corrupt and truncated


@pytest.mark.slow  # about 75 s: 7 child processes killed with SIGKILL
def test_soak_with_killed_cycles_and_ingests(tmp_path):
    faults = {5: "kill_cycle", 6: "missing", 7: "kill_cycle", 8: "corrupt", 9: "kill_cycle"}
    faults |= {10: "frozen", 11: "kill_cycle", 12: "kill_ingest", 13: "kill_cycle"}
    faults |= {14: "disk_full", 15: "truncated", 16: "kill_ingest", 17: "gap", 18: "gap"}
    faults |= {19: "gap"}
    report = run_soak(tmp_path, cycles=24, faults=faults)
    got = [(c.tick, c.status, c.reason) for c in report.cycles if c.status != "ok"]
    killed = "killed by SIGKILL at "
    assert [(t, s) for t, s, _ in got] == [
        (0, "skipped"), (1, "skipped"), (5, "failed"), (7, "failed"), (9, "failed"),
        (11, "failed"), (13, "failed"), (14, "failed"), (19, "skipped"), (20, "skipped"),
        (21, "skipped"),
    ]  # fmt: skip
    assert [r for t, _, r in got if t in (5, 7, 9, 11, 13)] == [
        killed + "forecast",
        killed + "verify",
        killed + "publish:file:forecast.nc",
        killed + "publish:renamed",
        killed + "publish:latest",
    ]
    assert all(r.startswith(GAP_REASON) for t, _, r in got if t >= 19)
    s = report.summary()
    assert (s["faults"]["kill_cycle"], s["faults"]["kill_ingest"]) == (5, 2)
    assert (s["blocked_after_fault"], s["frames_lost"], report.mismatches) == (0, 0, [])
    assert s["frames_arrived"] == 24 - 1 - 3 - 2


@pytest.mark.slow  # about 60 s: 14 cycles with the store in a moto bucket
def test_soak_on_object_storage_rides_out_outages_slowness_and_a_rival_writer(tmp_path):
    pytest.importorskip("moto.server")
    from products.soak import OBJECT_STORAGE_FAULTS
    from products.soak_s3 import run_object_storage_soak

    faults = {5: "outage", 6: "slow", 7: "rival", 8: "kill_ingest", 9: "missing"}
    faults |= {10: "outage", 11: "rival"}
    report = run_object_storage_soak(tmp_path, cycles=14, faults=faults)
    # ticks 0-1: fewer than 3 of the 5 input slots exist yet; every other cycle is ok
    assert [c.status for c in report.cycles] == ["skipped"] * 2 + ["ok"] * 12
    s = report.summary()
    assert {k: s["faults"][k] for k in OBJECT_STORAGE_FAULTS} == {
        "outage": 2,
        "slow": 1,
        "rival": 2,
    }
    assert (s["blocked_after_fault"], s["frames_lost"], s["frames_duplicated"]) == (0, 0, 0)
    assert report.mismatches == [] and s["frames_arrived"] == 13  # one missing

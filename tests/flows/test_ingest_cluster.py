"""The ingest flow on an existing dask cluster (``nowcast flow ingest --scheduler-address``): the
cluster's worker processes write the chunks into forks of the session, one commit a batch."""

from __future__ import annotations

import pytest
import xarray as xr


@pytest.mark.slow  # Prefect's server and a 2-process dask cluster: ~30 s
def test_flow_ingest_with_an_address_writes_chunks_on_the_cluster_and_commits_once(
    tiny_archive, tiny_archive_info, tmp_path, prefect_server
):
    from typer.testing import CliRunner

    from flows.cli import app
    from pipeline.ingest import ingest_archive
    from pipeline.store import open_store, store_log

    distributed = pytest.importorskip("dask.distributed")
    store = tmp_path / "radar.zarr"
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0"
    ) as cluster:
        res = CliRunner().invoke(
            app,
            ["flow", "ingest", str(tiny_archive), str(store), "--scheduler-address",
             cluster.scheduler_address],
        )  # fmt: skip
    assert res.exit_code == 0, res.output
    n = len(tiny_archive_info.readable_times)
    assert f"{n} frames written, 1 corrupt skipped" in res.stdout
    messages = [m for _, _, m in store_log(store)]
    # one batch (fewer frames than the 512 of a batch): one ingest commit, not one per day
    assert len(messages) == 3 and messages[0].startswith(f"ingest: add {n} frames, ")
    ingest_archive(tiny_archive, tmp_path / "direct.zarr", progress=False)
    xr.testing.assert_identical(
        open_store(store).load(), open_store(tmp_path / "direct.zarr").load()
    )

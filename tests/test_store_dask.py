"""The documented path past one machine: Dask maps ``scan_one`` over a ``list_store`` listing.

Runs on a real local Dask cluster of worker processes (``distributed.LocalCluster``); no
home-made scheduler.  The reports must equal those of ``scan_many`` in one process.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from test_store import CLEAN, EVIL, state_dict, tar_of, torch_zip

distributed = pytest.importorskip("distributed")
dask_bag = pytest.importorskip("dask.bag")


@pytest.mark.timeout(300)
def test_dask_local_cluster_maps_scan_over_a_listing(tmp_path: Path) -> None:
    from safeload._many import list_store, scan_many, scan_one

    store = tmp_path / "store"
    store.mkdir()
    for i in range(30):
        (store / f"m{i:02}.pkl").write_bytes(EVIL if i % 10 == 3 else CLEAN)
    (store / "empty.joblib").write_bytes(b"")
    (store / "notes.md").write_text("not a model\n")
    torch_zip(store / "net.pt", state_dict())
    (store / "bundle.tar.gz").write_bytes(tar_of({"x.pkl": EVIL}, "w:gz"))

    listing = list_store([store])
    assert len(listing) == 33 and not any(p.endswith("notes.md") for p in listing)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        assert len(client.scheduler_info()["workers"]) == 2
        reports = dask_bag.from_sequence(listing, npartitions=4).map(scan_one).compute()
    local = list(scan_many([store]))
    assert [pickle.dumps(r) for r in reports] == [pickle.dumps(r) for r in local]
    failed = sorted(Path(r.path).name for r in reports if r.failed)
    assert failed == ["bundle.tar.gz", "empty.joblib", "m03.pkl", "m13.pkl", "m23.pkl"]

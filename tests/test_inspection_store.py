"""The inspection store under several processes at once, and a process killed while writing."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from app.inspections import InspectionStore

pytestmark = pytest.mark.multiprocess

WRITER = textwrap.dedent("""
    import sys
    from app.inspections import InspectionStore
    path, inspector, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = InspectionStore(path)
    for i in range(n):
        store.set(f"obj{i % 40}", inspector=inspector, quality=1 + i % 4, comment=f"{inspector} {i}")
        store.set(f"{inspector}-own{i}", inspector=inspector, quality=4)
        print(i, flush=True)
""")


def _writer(path, inspector: str, n: int, report: bool = False) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), inspector, str(n)],
                            stdout=subprocess.PIPE if report else subprocess.DEVNULL, text=True, cwd=os.getcwd())


def test_two_processes_flagging_at_once_lose_nothing(tmp_path):
    path = tmp_path / "inspections.sqlite"
    InspectionStore(path)  # created before the writers race
    writers = [_writer(path, name, 150) for name in ("ann", "bob")]
    for writer in writers:
        assert writer.wait(timeout=300) == 0
    store = InspectionStore(path)
    history = store.history()
    assert len(history) == 2 * 2 * 150  # every change is a row
    for name in ("ann", "bob"):
        assert all(store.get(f"{name}-own{i}").quality == 4 for i in range(150))
    # the shared objects' current records are each some inspector's latest change to them
    assert {store.get(f"obj{k}").inspector for k in range(40)} <= {"ann", "bob"}


def test_a_writer_killed_mid_write_leaves_every_committed_change(tmp_path):
    path = tmp_path / "inspections.sqlite"
    writer = _writer(path, "kim", 100000, report=True)
    committed = -1
    end = time.time() + 60
    while committed < 200 and time.time() < end:
        committed = int(writer.stdout.readline())
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    writer.stdout.close()
    store = InspectionStore(path)
    # every change reported as done is there; the store is consistent and writable
    assert all(store.get(f"kim-own{i}").quality == 4 for i in range(committed + 1))
    assert store._connection().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.set("after", inspector="lee", quality=2)
    assert InspectionStore(path).get("after").inspector == "lee"


def test_disagreements_between_inspectors_are_found_and_exported(tmp_path):
    import numpy as np
    import pandas as pd
    from astropy.table import Table

    store = InspectionStore(tmp_path / "vi.sqlite", model_version="m1")
    z_peak = pd.Series({"agree": 1.20, "quality": 0.90, "redshift": 1.20, "alone": 2.0, "changed": 1.0,
                        "noted": 1.1})
    store.set("agree", "Ann", quality=4)
    store.set("agree", "Bob", quality=3, z_corrected=1.205)  # within 0.01 of the pipeline: agrees
    store.set("quality", "Ann", quality=4)
    store.set("quality", "Bob", quality=1)
    store.set("redshift", "Ann", quality=3)  # accepts the pipeline's 1.20
    store.set("redshift", "Bob", quality=3, z_corrected=1.5)
    store.set("alone", "Ann", quality=1)
    store.set("changed", "Ann", quality=1)
    store.set("changed", "Bob", quality=4)
    store.set("changed", "Ann", quality=3)  # Ann's latest record replaces her earlier one
    store.set("noted", "Cid", comment="no flag yet")  # a comment without a quality is not an inspection
    conflicts = store.conflicts(z_peak).set_index("object_id")
    assert sorted(conflicts.index) == ["quality", "redshift"]
    assert conflicts.loc["quality", "reason"] == "quality 1 to 4"
    assert conflicts.loc["redshift", "reason"] == "z 1.2000 to 1.5000"
    assert conflicts.loc["redshift", "inspectors"] == "Ann: 3, z 1.2000; Bob: 3, z 1.5000"
    assert store.get("changed").quality == 3  # the shared view stays the latest change
    # the merged export: who inspected each object, and why they disagree
    catalogue = pd.DataFrame({"object_id": z_peak.index, "z_peak": z_peak.to_numpy()})
    table = Table.read(store.export(catalogue, tmp_path / "merged.ecsv", inspector="Ann"))
    rows = {str(r["object_id"]): r for r in table}
    assert table.meta["NCONFLCT"] == 2
    assert rows["quality"]["vi_conflict"] == "quality 1 to 4" and str(rows["agree"]["vi_conflict"]) in ("", "--")
    assert rows["agree"]["vi_inspectors"] == "Ann, Bob" and rows["alone"]["vi_n_inspectors"] == 1
    assert np.array_equal(sorted(table["vi_n_inspectors"]), [0, 1, 2, 2, 2, 2])

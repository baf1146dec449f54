"""The Ray Data adapter on a local cluster of two worker processes gives the single-process
pipeline's suggestions. Skipped when the optional extra (``pip install -e .[scale]``) is not
installed: CI installs only ``.[test]``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="Ray is optional: pip install -e '.[scale]' to run the distributed adapter test")
pytest.importorskip("ray.data", reason="Ray Data missing: pip install 'ray[data]'")

from coder_assist.scale import distributed
from coder_assist.app import pipeline  # noqa: E402

DEMO_DIR = Path(__file__).resolve().parents[2] / "data" / "demo"


@pytest.fixture(scope="module")
def local_cluster():
    distributed.start(num_cpus=2)
    yield ray
    ray.shutdown()


def test_two_workers_match_single_process(local_cluster, base_encoder):
    files = sorted(DEMO_DIR.glob("P[1-4]_*.txt"))
    got = distributed.precode(files, workers=2, top_k=3, batch_size=16)
    want = pipeline.precode(files, encoder=base_encoder, top_k=3)
    assert got.attrs["n_segments"] == want.attrs["n_segments"]
    assert list(got.columns) == list(want.columns)
    key = ["transcript", "start", "code_id"]
    a = got.sort_values(key).reset_index(drop=True)
    b = want.sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a[key + ["rank", "code_path", "text", "evidence"]], b[key + ["rank", "code_path", "text", "evidence"]])
    np.testing.assert_allclose(a["confidence"], b["confidence"], rtol=1e-4)
    # Small batches, two actors: the rows came from two worker processes, neither the driver.
    import os

    assert len(got.attrs["worker_pids"]) == 2 and os.getpid() not in got.attrs["worker_pids"]

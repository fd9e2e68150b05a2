"""DDP through torchrun (2 CPU processes, gloo) equals one process over the same global batches."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.train import ddp_run

ROOT = Path(__file__).resolve().parents[2]


def test_two_processes_match_one(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(ROOT / "tests" / "train" / "ddp_run.py"),
        str(tmp_path / "ddp"),
        "8",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    ddp_run.main(str(tmp_path / "single"), 8)

    ddp = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    single = load_file(str(tmp_path / "single" / "model.safetensors"))
    assert ddp.keys() == single.keys()
    for name in ddp:
        torch.testing.assert_close(ddp[name], single[name], rtol=1e-4, atol=1e-5, msg=name)
    # metrics are all-reduced: both report the same epoch means
    m_ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    m_one = json.loads((tmp_path / "single" / "metrics.json").read_text())
    assert m_ddp["val_loss"] == pytest.approx(m_one["val_loss"], rel=1e-4)
    assert m_ddp["loss"] == pytest.approx(m_one["loss"], rel=1e-4)
    # rank 0 alone wrote the log: one row per step
    rows = (tmp_path / "ddp" / "train_log.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 8


def test_sharded_batches_skip_a_batch_too_small_for_every_process_alike():
    from lstmkit.train.distributed import ShardedBatches

    batches = [torch.arange(5), torch.arange(2), torch.arange(3)]  # 3 processes
    shard = lambda b, rank, world: b[rank::world]  # noqa: E731
    shares = {}
    for rank in range(3):
        sharded = ShardedBatches(batches, shard, rank, 3, rows=len)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            shares[rank] = [s.tolist() for s in sharded]
        assert len(caught) == (rank == 0)  # only rank 0 warns
        assert sharded.skipped == 1 and len(sharded) == 3
        if rank == 0:
            (warning,) = caught
            assert str(warning.message) == (
                "a global batch of 2 example(s) is smaller than the 3 processes: every process "
                "skips it (1 skipped so far)"
            )
    assert shares == {0: [[0, 3], [0]], 1: [[1, 4], [1]], 2: [[2], [2]]}
    with pytest.raises(
        ValueError,
        match="no batch of this epoch has at least one example for each of the 3 processes",
    ):
        list(ShardedBatches([torch.arange(2)], shard, 1, 3, rows=len))

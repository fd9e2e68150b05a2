"""DDP through torchrun (2 CPU processes, gloo) equals one process over the same global batches."""

import json
import os
import subprocess
import sys
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

"""DDP through the CLI (2 CPU processes under torchrun) equals one process for sentiment, as
it does for the lab (tests/cli): each process reads its share of every global batch and the
trainer weights each share by its size."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from lstmkit.cli.main import main

ROOT = Path(__file__).resolve().parents[2]
# no dropout anywhere: each process would draw its own masks
TINY = [
    "sentiment",
    "train",
    "--max-steps",
    "5",
    "--no-progress",
    "--model.embed_size",
    "16",
    "--model.hidden_size",
    "8",
    "--model.dropout",
    "0",
    "--model.dropouti",
    "0",
    "--data.max_len",
    "64",
    "--data.batch_size",
    "31",
    "--train.tensorboard",
    "false",
]


def test_sentiment_ddp_matches_one_process(tmp_path):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "lstmkit.cli.main",
        *TINY,
        "--out",
        str(tmp_path / "ddp"),
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert main([*TINY, "--out", str(tmp_path / "one")]) == 0
    ddp = load_file(str(tmp_path / "ddp" / "model.safetensors"))
    one = load_file(str(tmp_path / "one" / "model.safetensors"))
    assert ddp.keys() == one.keys()
    for name in one:  # an odd global batch (31): the shares differ in size
        torch.testing.assert_close(ddp[name], one[name], rtol=1e-4, atol=1e-5, msg=name)
    r_ddp = json.loads((tmp_path / "ddp" / "results.json").read_text())
    r_one = json.loads((tmp_path / "one" / "results.json").read_text())
    assert r_ddp["steps"] == r_one["steps"] == 5
    assert r_ddp["accuracy"] == r_one["accuracy"]


def test_sentiment_shards_partition_a_batch():
    from lstmkit.tasks.sentiment.task import Batch, shard

    ids = torch.arange(5 * 3).view(5, 3)  # (L, N)
    batch = Batch(ids, torch.tensor([5, 2, 3]), torch.tensor([1, 0, 1]))
    first, second = shard(batch, 0, 2), shard(batch, 1, 2)
    assert torch.equal(first.ids, ids[:, [0, 2]]) and first.lengths.tolist() == [5, 3]
    assert torch.equal(second.ids, ids[:2, [1]])  # cut to its longest review
    assert second.labels.tolist() == [0] and first.labels.tolist() == [1, 1]

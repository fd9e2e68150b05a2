"""Errors of ensembles of trained isolated-digit speech models on FSDD's validation split.

Every combination of two or more of the given model directories, their softmax
probabilities averaged (RESULTS.md, Speech)::

    python scripts/fsdd_ensemble.py runs/fsdd-digits-v1 runs/fsdd-digits-v4 ...
"""

import itertools
import sys

import torch

from lstmkit.tasks import get_task, run

torch.set_num_threads(1)
dirs = sys.argv[1:]
task = get_task("speech")
probs, labels = {}, None
for d in dirs:
    p = run.load(d, "cpu")
    data = task.eval_data(p, "../shared/data/fsdd/recordings", "val")
    out = []
    with torch.no_grad():
        for b in data.batches:
            logits, _ = p.model(b.feats, b.lengths)
            out.append(logits.softmax(-1))
    probs[d] = torch.cat(out)
    labels = torch.tensor([it.labels[0] for it in data.items])
    print(d, "alone", int((probs[d].argmax(-1) != labels).sum()), "errors", flush=True)
for k in range(2, len(dirs) + 1):
    for combo in itertools.combinations(dirs, k):
        m = torch.stack([probs[d] for d in combo]).mean(0)
        wrong = (m.argmax(-1) != labels).nonzero().flatten().tolist()
        print(k, [c.split("-")[-1] for c in combo], len(wrong), "errors")

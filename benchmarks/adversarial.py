"""Cost of the sentiment task's adversarial training step against a plain step.

Run from the repository root (numbers in BENCHMARKS.md)::

    python -m benchmarks.adversarial            # the imdb-cpu model, batch 32 x ~300 tokens
    python -m benchmarks.adversarial --repeats 5 --length 100

Times forward + backward of one training batch, median of ``--repeats`` after one warm-up, in
one process with the three steps interleaved round-robin (so a shared machine's slow phases hit
them alike):

- plain: ``sentiment_step`` without adversarial training;
- two passes: the formulation before the twelfth-session change, written out here: the
  gradient at the embeddings from one backward of the clean loss (graph kept), then one
  backward of clean + perturbed, which goes through the clean graph a second time;
- the task's step: ``sentiment_step(..., adversarial=5)``, one pass through the clean graph.

Each adversarial step is also reported as a ratio to the plain one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from lstmkit.tasks.sentiment import task
from lstmkit.tasks.sentiment.model import (
    RecurrentEncoder,
    SentimentClassifier,
    SentimentModelConfig,
)


def two_pass_loss(model: SentimentClassifier, batch: task.Batch, epsilon: float) -> torch.Tensor:
    x = model.encoder.embed(batch.ids)
    if not x.requires_grad:
        x.requires_grad_()
    clean = F.cross_entropy(
        model.classify(model.encoder.encode(x, batch.lengths), batch.lengths).float(),
        batch.labels,
    )
    (g,) = torch.autograd.grad(clean, x, retain_graph=True)
    r = epsilon * g / (g.pow(2).sum((0, 2), keepdim=True).sqrt() + 1e-12)
    perturbed = model.classify(model.encoder.encode(x + r, batch.lengths), batch.lengths)
    return clean + F.cross_entropy(perturbed.float(), batch.labels)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--length", type=int, default=300, help="tokens per review (longest)")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    # the imdb-cpu preset's model (its vocabulary, sizes, dropouts, frozen table)
    cfg = SentimentModelConfig(
        embed_size=200,
        hidden_size=160,
        pooling="max+mean",
        dropout=0.2,
        dropouti=0.15,
        dropoute=0.05,
        weight_drop=0.1,
        freeze_embeddings=True,
    )
    model = SentimentClassifier(RecurrentEncoder(30000, cfg), cfg).train()
    ids = torch.randint(1, 30000, (args.length, args.batch))
    lengths = torch.linspace(args.length // 2, args.length, args.batch).long()
    batch = task.Batch(ids, lengths, torch.randint(0, 2, (args.batch,)))
    steps: dict[str, Callable[[], torch.Tensor]] = {
        "plain": lambda: task.sentiment_step(model, batch).loss,
        "two passes": lambda: two_pass_loss(model, batch, 5.0),
        "the task's step": lambda: task.sentiment_step(model, batch, adversarial=5.0).loss,
    }
    times: dict[str, list[float]] = {name: [] for name in steps}
    for repeat in range(args.repeats + 1):
        for name, step in steps.items():
            model.zero_grad(set_to_none=True)
            start = time.perf_counter()
            step().backward()
            if repeat:  # the first round warms up
                times[name].append(time.perf_counter() - start)
    plain = statistics.median(times["plain"])
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"batch {args.batch} x {args.length} tokens, {args.repeats} repeats"
    )
    for name, ts in times.items():
        median = statistics.median(ts)
        print(f"{name:>16}: {1000 * median:7.1f} ms  {median / plain:4.2f}x plain")


if __name__ == "__main__":
    main()

"""Make the IMDB sample bundled with lstmkit (``lstmkit/data/samples/aclImdb_sample.tar.gz``).

Draws ``--size`` labelled reviews of the training split of ``aclImdb_v1.tar.gz`` (seeded,
half positive, half negative), in the canonical layout, with the ``urls_{pos,neg}.txt``
files (line n names the movie of review n; lines of reviews not drawn are left empty) so the
movie-grouped validation split works on the sample as on the full data set::

    python scripts/make_imdb_sample.py ../shared/data/imdb/aclImdb_v1_train.tar.gz --size 3000
"""

from __future__ import annotations

import argparse
import io
import random
import tarfile
from pathlib import Path

from lstmkit.data.imdb import load_imdb

OUT = Path(__file__).resolve().parents[1] / "lstmkit/data/samples/aclImdb_sample.tar.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("archive", help="aclImdb_v1.tar.gz (or a train-only archive of it)")
    parser.add_argument("--size", type=int, default=3000, help="reviews in the sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()

    reviews = load_imdb(args.archive, "train").reviews
    rng = random.Random(args.seed)
    chosen = []
    for label in (0, 1):
        pool = [r for r in reviews if r.label == label]
        chosen += rng.sample(pool, args.size // 2)
    with tarfile.open(args.archive, "r:gz") as archive:
        originals = {m.name: m for m in archive.getmembers() if m.name.endswith(".txt")}
        names = [r.path for r in chosen] + [f"aclImdb/train/urls_{k}.txt" for k in ("pos", "neg")]
        raw = {name: archive.extractfile(originals[name]).read() for name in names}
    with tarfile.open(args.out, "w:gz") as out:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            out.addfile(info, io.BytesIO(data))

        for kind in ("neg", "pos"):
            lines = raw[f"aclImdb/train/urls_{kind}.txt"].decode().splitlines()
            kept = {r.id for r in chosen if r.path.split("/")[2] == kind}
            text = "".join((line if k in kept else "") + "\n" for k, line in enumerate(lines))
            add(f"aclImdb/train/urls_{kind}.txt", text.encode())
        for review in sorted(chosen, key=lambda r: r.path):
            add(review.path, raw[review.path])
    print(f"{args.out}: {len(chosen)} reviews, {Path(args.out).stat().st_size:,} bytes")


if __name__ == "__main__":
    main()

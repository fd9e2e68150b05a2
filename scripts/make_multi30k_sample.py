"""Make lstmkit/data/samples/multi30k/: the first 500 training and 100 validation pairs of
Multi30k task 1 (de, en, fr), gzip with a fixed mtime so the files are reproducible.

    python scripts/make_multi30k_sample.py ../shared/data/multi30k
"""

import gzip
import sys
from pathlib import Path

SIZES = {"train": 500, "val": 100}
LANGS = ("de", "en", "fr")


def main(src: str) -> None:
    out = Path(__file__).resolve().parents[1] / "lstmkit" / "data" / "samples" / "multi30k"
    out.mkdir(parents=True, exist_ok=True)
    for split, n in SIZES.items():
        for lang in LANGS:
            with gzip.open(Path(src) / f"{split}.{lang}.gz", "rt", encoding="utf-8") as f:
                lines = f.read().split("\n")[:n]
            with gzip.GzipFile(out / f"{split}.{lang}.gz", "wb", mtime=0) as f:
                f.write(("\n".join(lines) + "\n").encode("utf-8"))
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/data/multi30k")

"""Make the FSDD sample bundled with lstmkit (``lstmkit/data/samples/fsdd_sample.tar.gz``).

Copies real recordings of the Free Spoken Digit Dataset (Zohar Jackson et al., CC BY-SA 4.0;
see ``lstmkit/data/samples/FSDD_LICENSE.txt``) unchanged into a gzipped tar, every digit of
``--speakers`` at the validation indices ``--val`` and the training indices ``--train``
(never FSDD's test indices 0-4)::

    python scripts/make_fsdd_sample.py ../shared/data/fsdd/recordings
"""

from __future__ import annotations

import argparse
import tarfile
from pathlib import Path

from lstmkit.data.fsdd import SPLITS

OUT = Path(__file__).resolve().parents[1] / "lstmkit/data/samples/fsdd_sample.tar.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recordings", help="FSDD's recordings/ folder")
    parser.add_argument("--speakers", default="nicolas,theo,yweweler", help="comma-separated")
    parser.add_argument("--val", default="5,6", help="validation indices (5-9)")
    parser.add_argument("--train", default="10,11,12,13,14", help="training indices (10-49)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args()

    indices = [int(i) for i in f"{args.val},{args.train}".split(",")]
    if any(i in SPLITS["test"] for i in indices):
        raise SystemExit("the sample must not hold FSDD's test indices 0-4")
    files = [
        Path(args.recordings) / f"{d}_{s}_{i}.wav"
        for s in args.speakers.split(",")
        for d in range(10)
        for i in indices
    ]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"missing recordings: {', '.join(missing[:5])}")
    with tarfile.open(args.out, "w:gz", compresslevel=9) as tar:
        for f in files:  # fixed metadata, so the archive is the same on every run
            info = tar.gettarinfo(str(f), arcname=f"recordings/{f.name}")
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            with open(f, "rb") as fh:
                tar.addfile(info, fh)
    print(f"{len(files)} recordings -> {args.out} ({Path(args.out).stat().st_size} bytes)")


if __name__ == "__main__":
    main()

"""Write lstmkit's bundled M4 Hourly sample: every 10th series of ``Hourly-train.csv``
(40 of 414, whole rows, M4's layout), gzip-compressed.

    python scripts/make_m4_sample.py ../shared/data/m4/Hourly-train.csv

M4 data: Makridakis, Spiliotis & Assimakopoulos (2020), "The M4 Competition: 100,000 time
series and 61 forecasting methods", International Journal of Forecasting 36(1);
github.com/Mcompetitions/M4-methods.
"""

import csv
import gzip
import io
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "lstmkit/data/samples/m4_hourly_sample.csv.gz"


def main(source: str) -> None:
    with open(source, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    picked = body[::10][:40]
    width = max(len([c for c in r if c]) for r in picked)
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(header[:width])
    for r in picked:
        w.writerow(r[:width])
    # mtime=0: the same bytes on every run
    OUT.write_bytes(gzip.compress(text.getvalue().encode(), mtime=0))
    print(f"{OUT}: {len(picked)} series, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1])

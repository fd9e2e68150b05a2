"""Time series in the two layouts forecasters meet: M4's wide CSV and the long data frame.

**M4** (Makridakis et al. 2018, github.com/Mcompetitions/M4-methods ``Dataset/``): one series
a row, the id first, then its values; rows are ragged (shorter series end in empty cells);
the header is ``"V1","V2",...``. ``Hourly-train.csv`` and ``Hourly-test.csv`` hold the same
ids in the same order. **Long** (NeuralForecast / statsforecast): columns ``unique_id``,
``ds`` (dates or integers) and ``y``, in CSV or Parquet, any row order.

Every series read is kept (none is dropped); what cannot be read is an error naming the
series and the cell. :data:`M4_FREQUENCIES` states M4's horizons and seasonal periods.

Example::

    >>> import io
    >>> series = read_m4(io.StringIO('"V1","V2","V3","V4"\\n"H1",1,2,3\\n"H2",4,5,\\n'))
    >>> [(s.id, s.values.tolist()) for s in series]
    [('H1', [1.0, 2.0, 3.0]), ('H2', [4.0, 5.0])]
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np


class Frequency(NamedTuple):
    """An M4 frequency: the forecast ``horizon``, the seasonal period ``season`` that M4's
    MASE and Naive2 use, and the pandas alias of its time step."""

    horizon: int
    season: int
    pandas: str


# M4's Guide: horizons 48/14/13/18/8/6; MASE's periods 24/1/1/12/4/1.
M4_FREQUENCIES: dict[str, Frequency] = {
    "hourly": Frequency(48, 24, "h"),
    "daily": Frequency(14, 1, "D"),
    "weekly": Frequency(13, 1, "W"),
    "monthly": Frequency(18, 12, "MS"),
    "quarterly": Frequency(8, 4, "QS"),
    "yearly": Frequency(6, 1, "YS"),
}


@dataclass
class Series:
    """One series: its ``id``, its ``values`` (float64, oldest first) and, for series read
    from a long frame, the time stamp of its last value (``last``: a ``pandas.Timestamp`` or
    an int) so forecasts can carry dates."""

    id: str
    values: np.ndarray
    last: Any = None

    def __len__(self) -> int:
        return len(self.values)


def _open_text(path: str | Path | IO[str]) -> IO[str]:
    if not isinstance(path, (str, Path)):
        return path
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")  # noqa: SIM115 (the wrapper closes it)
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def _number(cell: str, where: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"{where}: {cell!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: {cell!r} is not a finite number (NaN or infinite)")
    return value


def read_m4(path: str | Path | IO[str]) -> list[Series]:
    """The series of an M4 CSV file (plain or ``.gz``), in file order.

    Raises:
        ValueError: an empty file, a row without an id, an empty series, a value that is not a
            finite number, an empty cell inside a series (only trailing cells may be empty),
            or an id seen twice, each naming the row and series.
    """
    name = str(path) if isinstance(path, (str, Path)) else "<stream>"
    series: list[Series] = []
    seen: dict[str, int] = {}
    try:
        with _open_text(path) as f:
            rows = csv.reader(f)
            header = next(rows, None)
            if header is None:
                raise ValueError(f"{name}: empty file (expected a header row and one series a row)")
            for row_no, row in enumerate(rows, start=2):
                if not row or not any(cell.strip() for cell in row):
                    continue  # a blank line
                sid = row[0].strip()
                where = f"{name}, row {row_no} (series {sid!r})"
                if not sid:
                    raise ValueError(f"{name}, row {row_no}: no series id in the first column")
                cells = [c.strip() for c in row[1:]]
                while cells and not cells[-1]:
                    cells.pop()  # ragged rows end in empty cells
                if not cells:
                    raise ValueError(f"{where}: the series has no values")
                if "" in cells:
                    k = cells.index("")
                    raise ValueError(f"{where}: value {k + 1} is empty inside the series")
                if sid in seen:
                    raise ValueError(f"{where}: duplicate id (also row {seen[sid]})")
                seen[sid] = row_no
                values = [_number(c, f"{where}, value {k + 1}") for k, c in enumerate(cells)]
                series.append(Series(sid, np.asarray(values, dtype=np.float64)))
    except UnicodeDecodeError as e:
        raise ValueError(f"{name}: not UTF-8 text ({e})") from None
    except csv.Error as e:
        raise ValueError(f"{name}: not a CSV file ({e})") from None
    if not series:
        raise ValueError(f"{name}: no series (only a header)")
    return series


def write_m4(path: str | Path, ids: list[str], rows: np.ndarray | list, prefix: str = "F") -> None:
    """Forecasts in M4's submission layout: ``id,F1,...,Fh``, one row per series."""
    rows = np.asarray(rows, dtype=np.float64)
    with Path(path).open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", *[f"{prefix}{k + 1}" for k in range(rows.shape[1])]])
        for sid, row in zip(ids, rows):
            w.writerow([sid, *[repr(float(v)) for v in row]])


def read_long(path: str | Path, freq: str | None = None) -> list[Series]:
    """The series of a long frame (``unique_id, ds, y``; ``.csv``, ``.csv.gz`` or
    ``.parquet``), ordered by first appearance, each sorted by ``ds``.

    ``ds`` may hold dates or integers. With ``freq`` (a pandas alias such as ``h`` or
    ``W-SUN``) dated series must be regular at that frequency.

    Raises:
        ValueError: missing columns, a non-numeric or non-finite ``y``, an unreadable ``ds``,
            a duplicate time stamp, or (with ``freq``) a gap, each naming the series.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, dtype={"unique_id": str})
    except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ValueError(f"{path}: not a readable long frame ({e})") from None
    missing = [c for c in ("unique_id", "ds", "y") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path}: the long layout needs columns unique_id, ds, y; missing {', '.join(missing)}"
        )
    y = pd.to_numeric(frame["y"], errors="coerce")
    bad = frame.index[y.isna() | ~np.isfinite(y.fillna(0).to_numpy())]
    if len(bad):
        row = frame.loc[bad[0]]
        raise ValueError(
            f"{path}, row {int(bad[0]) + 2} (series {row['unique_id']!r}, ds {row['ds']!r}): "
            f"y {row['y']!r} is not a finite number"
        )
    ds = frame["ds"]
    if not pd.api.types.is_integer_dtype(ds):
        try:
            ds = pd.to_datetime(ds)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: ds holds neither integers nor dates ({e})") from None
    frame = pd.DataFrame({"unique_id": frame["unique_id"].astype(str), "ds": ds, "y": y})
    out = []
    for sid, group in frame.groupby("unique_id", sort=False):
        group = group.sort_values("ds", kind="stable")
        dup = group["ds"].duplicated()
        if dup.any():
            raise ValueError(
                f"{path}: series {sid!r} has time stamp {group['ds'][dup].iloc[0]} twice"
            )
        if freq is not None and len(group) > 1 and not pd.api.types.is_integer_dtype(ds):
            expected = pd.date_range(group["ds"].iloc[0], periods=len(group), freq=freq)
            if not (expected == pd.DatetimeIndex(group["ds"])).all():
                k = int(np.argmax(expected != pd.DatetimeIndex(group["ds"])))
                raise ValueError(
                    f"{path}: series {sid!r} is not regular at frequency {freq!r}: its value "
                    f"{k + 1} is at {group['ds'].iloc[k]}, expected {expected[k]}"
                )
        out.append(Series(str(sid), group["y"].to_numpy(np.float64), group["ds"].iloc[-1]))
    if not out:
        raise ValueError(f"{path}: no rows")
    return out


def future_stamps(series: Series, horizon: int, freq: str | None) -> list[Any]:
    """The ``horizon`` time stamps after ``series``' last (1, 2, ... for M4 series)."""
    import pandas as pd

    if series.last is None:
        n = len(series)
        return list(range(n + 1, n + horizon + 1))
    if isinstance(series.last, (int, np.integer)):
        return [int(series.last) + k for k in range(1, horizon + 1)]
    if freq is None:
        raise ValueError("dated series need a frequency (data.freq, a pandas alias) to forecast")
    return list(pd.date_range(series.last, periods=horizon + 1, freq=freq)[1:])


def read_series(path: str | Path, layout: str = "auto", freq: str | None = None) -> list[Series]:
    """:func:`read_m4` or :func:`read_long`: ``layout`` ``m4``, ``long`` or ``auto`` (long
    for Parquet or a CSV whose header names ``unique_id``)."""
    if layout not in ("auto", "m4", "long"):
        raise ValueError(f"layout must be auto, m4 or long; got {layout!r}")
    if layout == "auto":
        layout = "long" if Path(path).suffix == ".parquet" or _has_long_header(path) else "m4"
    return read_long(path, freq) if layout == "long" else read_m4(path)


def _has_long_header(path: str | Path) -> bool:
    try:
        with _open_text(path) as f:
            first = f.readline()
    except UnicodeDecodeError:
        return False
    return "unique_id" in first.replace('"', "").split(",")

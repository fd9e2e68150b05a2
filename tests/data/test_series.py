"""Series readers: M4's ragged wide CSV (plain and gzip) and long frames, and their errors."""

import gzip

import numpy as np
import pandas as pd
import pytest

from lstmkit.data.series import future_stamps, read_long, read_m4, read_series, write_m4

M4 = '"V1","V2","V3","V4","V5"\n"H1",1,2,3,4\n"H2",5,6,,\n"H3","7.5","8",9,\n'


def write(tmp_path, name, text, gz=False):
    path = tmp_path / name
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_m4_ragged_rows_keep_every_value(tmp_path, gz):
    path = write(tmp_path, "H.csv.gz" if gz else "H.csv", M4, gz)
    series = read_m4(path)
    assert [s.id for s in series] == ["H1", "H2", "H3"]
    assert [s.values.tolist() for s in series] == [[1, 2, 3, 4], [5, 6], [7.5, 8, 9]]
    assert series[0].values.dtype == np.float64


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('"H1",1,x,3\n', r"row 2 \(series 'H1'\), value 2: 'x' is not a number"),
        ('"H1",1,nan,3\n', "value 2: 'nan' is not a finite number"),
        ('"H1",1,inf\n', "value 2: 'inf' is not a finite number"),
        ('"H1",1,,3\n', "value 2 is empty inside the series"),
        ('"H1",1\n"H1",2\n', r"row 3 \(series 'H1'\): duplicate id \(also row 2\)"),
        ('"H1",,\n', "the series has no values"),
        (",1,2\n", "row 2: no series id"),
    ],
)
def test_m4_bad_cells_name_the_row_and_series(tmp_path, body, message):
    path = write(tmp_path, "bad.csv", '"V1","V2","V3","V4"\n' + body)
    with pytest.raises(ValueError, match=message):
        read_m4(path)


def test_m4_empty_and_undecodable_files(tmp_path):
    with pytest.raises(ValueError, match="empty file"):
        read_m4(write(tmp_path, "e.csv", ""))
    with pytest.raises(ValueError, match="no series"):
        read_m4(write(tmp_path, "h.csv", '"V1","V2"\n'))
    (tmp_path / "b.csv").write_bytes(b'"V1","V2"\n"H1",\xff\xfe\n')
    with pytest.raises(ValueError, match="not UTF-8"):
        read_m4(tmp_path / "b.csv")
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_m4(tmp_path / "missing.csv")


def test_write_m4_round_trips(tmp_path):
    write_m4(tmp_path / "f.csv", ["a", "b"], [[1.5, 2.0], [3.0, 4.25]])
    assert (tmp_path / "f.csv").read_text().splitlines()[0] == "id,F1,F2"
    assert [s.values.tolist() for s in read_m4(tmp_path / "f.csv")] == [[1.5, 2], [3, 4.25]]


def long_frame(tmp_path, rows, name="long.csv"):
    path = tmp_path / name
    frame = pd.DataFrame(rows, columns=["unique_id", "ds", "y"])
    if name.endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("name", ["long.csv", "long.parquet"])
def test_long_frame_sorts_by_time_and_keeps_first_appearance_order(tmp_path, name):
    rows = [("b", 2, 20.0), ("a", 3, 3.0), ("b", 1, 10.0), ("a", 1, 1.0), ("a", 2, 2.0)]
    series = read_long(long_frame(tmp_path, rows, name))
    assert [(s.id, s.values.tolist(), s.last) for s in series] == [
        ("b", [10, 20], 2),
        ("a", [1, 2, 3], 3),
    ]
    assert future_stamps(series[1], 2, None) == [4, 5]
    assert read_series(tmp_path / name)[0].id == "b"  # auto-detected as long


def test_long_frame_dates_and_their_errors(tmp_path):
    rows = [("s", f"2020-01-01 0{h}:00", float(h + 1)) for h in range(4)]
    series = read_long(long_frame(tmp_path, rows), freq="h")
    assert series[0].values.tolist() == [1, 2, 3, 4]
    assert [str(t) for t in future_stamps(series[0], 2, "h")] == [
        "2020-01-01 04:00:00",
        "2020-01-01 05:00:00",
    ]
    gap = rows[:2] + [("s", "2020-01-01 05:00", 9.0)]
    with pytest.raises(ValueError, match="series 's' is not regular at frequency 'h': its value 3"):
        read_long(long_frame(tmp_path, gap), freq="h")
    with pytest.raises(ValueError, match="series 's' has time stamp .* twice"):
        read_long(long_frame(tmp_path, rows + [rows[0]]))
    with pytest.raises(ValueError, match=r"row 3 \(series 's'.*y 'x' is not a finite number"):
        read_long(long_frame(tmp_path, [rows[0], ("s", "2020-01-01 01:00", "x")]))
    path = tmp_path / "cols.csv"
    path.write_text("id,ds,value\na,1,2\n")
    with pytest.raises(ValueError, match="missing unique_id, y"):
        read_long(path)

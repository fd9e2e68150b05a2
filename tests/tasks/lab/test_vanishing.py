import json

from lstmkit.cli.main import main


def test_vanishing_writes_results_and_shows_the_rnn_decaying_faster(tmp_path, capsys):
    out = tmp_path / "van"
    args = [
        "lab",
        "vanishing",
        "--T",
        "10",
        "30",
        "--models",
        "rnn",
        "lstm",
        "--train-steps",
        "3",
        "--train-T",
        "11",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["models"]) == {"rnn", "lstm"}
    decay = {}
    for name, entry in results["models"].items():
        dh = entry["init"]["30"]["dh"][-1]
        assert len(dh) == 30 and len(entry["init"]["10"]["dh"][-1]) == 10
        decay[name] = dh[0] / dh[-1]  # signal reaching 29 steps back, relative to the last
    assert decay["rnn"] < decay["lstm"]
    assert (out / "vanishing.png").stat().st_size > 10_000
    rows = (out / "profiles.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 2 * (10 + 30)
    assert "init" in capsys.readouterr().out

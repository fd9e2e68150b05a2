import json

import pytest

from lstmkit import __version__
from lstmkit.cli.main import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"lstmkit {__version__}"


def test_help_lists_commands(capsys):
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_demo_writes_json(tmp_path, capsys):
    out = tmp_path / "demo.json"
    code = main(["demo", "--T", "12", "--max-steps", "3", "--no-progress", "--json", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["steps"] == 3 and result["train_sequences"] == 96 and result["T"] == 12
    assert 0.0 <= result["solved_fraction"] <= 1.0
    assert f"{result['solved_fraction']:.1%} of 2000 fresh" in capsys.readouterr().out


def test_unknown_command_is_an_error(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["nope"])
    assert exit_.value.code == 2
    assert "invalid choice: 'nope'" in capsys.readouterr().err

"""Model cards in every model directory (task, data and citation, metrics, the command that
made it, intended use and limits) and the Hub-style save/load round trip, offline."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

import lstmkit
from lstmkit.cli.main import main
from lstmkit.tasks.card import model_card
from lstmkit.tasks.hub import LSTMKitModel
from tests.serve.fixtures import CAT

pytestmark = pytest.mark.usefixtures("one_thread")


def test_training_from_the_cli_writes_a_card_with_its_command(tmp_path):
    data, out = tmp_path / "cat.txt", tmp_path / "shakespeare"
    data.write_text(CAT)
    argv = [
        "lm",
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--max-steps",
        "2",
        "--no-progress",
        "--model.embed_size",
        "8",
        "--model.hidden_size",
        "8",
        "--model.num_layers",
        "1",
        "--data.bptt",
        "8",
        "--data.batch_size",
        "2",
        "--data.eval_batch_size",
        "1",
        "--train.tensorboard",
        "false",
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    card = (out / "README.md").read_text()
    results = json.loads((out / "results.json").read_text())
    head, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    assert head.splitlines() == [
        "library_name: lstmkit",
        "tags: [lstm, lstmkit, lm]",
        "pipeline_tag: text-generation",
    ]
    assert body.startswith("\n# shakespeare: an lstmkit language model\n")
    assert f"| bits_per_char | {results['bits_per_char']:.4f} |" in card
    assert f"| steps | {results['steps']} |" in card and results["steps"] == 2
    assert f"```\nlstmkit {' '.join(argv)}\n```" in card  # the command that made it
    for section in (
        "## Model",
        "## Data",
        "## Metrics",
        "## How it was made",
        "## How to use",
        "## Intended use",
        "## Limits",
        "## Citation",
    ):
        assert f"\n{section}\n" in card
    assert "karpathy2015charrnn" in card and "hochreiter1997lstm" in card
    # tied decoder: 14 x 8 embedding, (8 + 8) x 32 + 2 x 32 LSTM, 14 decoder biases
    assert sum(p.numel() for p in lstmkit.load(out).model.parameters()) == 702
    assert "- Parameters: 702\n" in card


def test_a_python_run_says_so_and_every_task_has_a_card(model_dirs, tmp_path):
    card = (model_dirs["imdb"] / "README.md").read_text()
    accuracy = json.loads((model_dirs["imdb"] / "results.json").read_text())["accuracy"]
    assert f"| accuracy | {accuracy:.4f} |" in card
    assert "`lstmkit.tasks.run.train` from Python" in card and "maas2011imdb" in card
    assert "pipeline_tag: text-classification" in card and "datasets: [imdb]" in card
    # every registered task declares its card
    (tmp_path / "config.json").write_text(json.dumps({"task": "translate", "config": {}}))
    card = model_card(tmp_path, ["lstmkit", "translate", "train"])
    assert "# " + tmp_path.name + ": an lstmkit sequence-to-sequence translator" in card
    assert "pipeline_tag: translation" in card and "elliott2016multi30k" in card
    # a task that declares no card (e.g. one registered from outside) gets the generic card
    (tmp_path / "config.json").write_text(json.dumps({"task": "poetry", "config": {}}))
    card = model_card(tmp_path, ["lstmkit", "poetry", "train"])
    assert "# " + tmp_path.name + ": an lstmkit poetry model" in card
    assert "```\nlstmkit poetry train\n```" in card
    assert "No `results.json`: the model has not been scored." in card
    assert "pipeline_tag" not in card and "## Limits" in card


def test_save_and_load_pretrained_offline(model_dirs, tmp_path, monkeypatch):
    import huggingface_hub

    def no_network(*args, **kwargs):
        raise AssertionError("the network was asked")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    source = model_dirs["imdb"]
    model = LSTMKitModel.from_pretrained(str(source))
    assert model.task == "sentiment"
    model.save_pretrained(tmp_path / "hub")
    files = sorted(p.name for p in (tmp_path / "hub").iterdir())
    assert files == [
        "README.md",
        "config.json",
        "metrics.json",
        "model.safetensors",
        "results.json",
        "tokenizer.json",
    ]
    for name in ("config.json", "model.safetensors", "README.md"):  # copied byte for byte
        assert (tmp_path / "hub" / name).read_bytes() == (source / name).read_bytes()
    texts = ["A moving film.", "Dull."]
    expected = lstmkit.load(source).predict(texts)
    assert LSTMKitModel.from_pretrained(tmp_path / "hub").predict(texts) == expected
    assert lstmkit.load(tmp_path / "hub").predict(texts) == expected  # a model directory
    # `lstmkit export --format hub` does the same
    with contextlib.redirect_stdout(io.StringIO()):
        assert (
            main(
                [
                    "export",
                    "--model",
                    str(source),
                    "--format",
                    "hub",
                    "--out",
                    str(tmp_path / "cli"),
                ]
            )
            == 0
        )
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == files


def test_an_unknown_repo_is_an_error_offline(tmp_path, monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises((LocalEntryNotFoundError, OSError)):
        LSTMKitModel.from_pretrained(
            "nobody/no-such-model", cache_dir=tmp_path, local_files_only=True
        )


def test_push_to_hub_uploads_the_saved_folder(model_dirs, monkeypatch):
    """push_to_hub is the mixin's: with the Hub API replaced (no network), it creates the
    repository and uploads exactly the folder save_pretrained writes."""
    import huggingface_hub.hub_mixin as mixin

    calls = {}

    class FakeApi:
        def __init__(self, token=None):
            calls["token"] = token

        def create_repo(self, repo_id, private=None, exist_ok=False):
            calls["repo"] = (repo_id, private, exist_ok)
            return type("Url", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, **kwargs):
            calls["files"] = sorted(p.name for p in folder_path.iterdir())
            calls["card"] = (folder_path / "README.md").read_text()
            return f"https://example.invalid/{repo_id}/commit/1"

    monkeypatch.setattr(mixin, "HfApi", FakeApi)
    model = LSTMKitModel.from_pretrained(str(model_dirs["imdb"]))
    url = model.push_to_hub("me/imdb-lstm", token="t0k", private=True)
    assert url == "https://example.invalid/me/imdb-lstm/commit/1"
    assert calls["repo"] == ("me/imdb-lstm", True, True) and calls["token"] == "t0k"
    assert calls["files"] == [
        "README.md",
        "config.json",
        "metrics.json",
        "model.safetensors",
        "results.json",
        "tokenizer.json",
    ]
    assert calls["card"] == (model_dirs["imdb"] / "README.md").read_text()

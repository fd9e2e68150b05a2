"""Model directories written by an earlier release (commit 77d0746, committed as fixtures:
a 5-step sentiment model and the lab-adding-t100 preset's model) load, predict what that
release predicted, export and get a model card."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lstmkit.tasks import run
from lstmkit.tasks.base import ModelDir
from lstmkit.tasks.card import model_card
from lstmkit.tasks.export import export_onnx

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "model_dirs"
SENTIMENT, LAB = FIXTURES / "sentiment-77d0746", FIXTURES / "lab-adding-77d0746"
# what commit 77d0746 predicted for these inputs
REVIEWS = ["A moving, beautifully shot film.", "Dull and far too long."]
POSITIVE = [0.5784121751785278, 0.5888277888298035]
SEQUENCE = [[0.1 * k % 1, 1.0 if k in (3, 40) else 0.0] for k in range(100)]
SUM = 0.5530661344528198


def test_a_sentiment_directory_of_the_earlier_release_predicts_as_it_did():
    outputs = run.load(SENTIMENT, "cpu").predict(REVIEWS)
    assert [o["positive"] for o in outputs] == pytest.approx(POSITIVE, abs=1e-6)
    assert [o["label"] for o in outputs] == ["pos", "pos"]


def test_a_lab_directory_of_the_earlier_release_predicts_as_it_did():
    (output,) = run.load(LAB, "cpu").predict([SEQUENCE])
    assert output["prediction"] == pytest.approx(SUM, abs=1e-5)


@pytest.mark.parametrize("source", [SENTIMENT, LAB], ids=["sentiment", "lab"])
def test_earlier_directories_read_export_and_get_a_card(source, tmp_path):
    model_dir = ModelDir(source)
    raw = model_dir.read()
    assert raw["format"] == 1 and raw["task"] in ("sentiment", "lab")
    assert model_dir.results()["task"] == raw["task"]
    card = model_card(source)
    assert f"(task `{raw['task']}`)" in card and "## Limits" in card
    copy = tmp_path / source.name
    shutil.copytree(source, copy)
    result = export_onnx(copy, tmp_path / "m.onnx", evaluate=False)
    assert result["max_difference"] <= 1e-4

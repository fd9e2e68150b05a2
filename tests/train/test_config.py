"""Config validation, dict/YAML loading with unknown-key rejection, CLI overrides."""

import re

import pytest

from lstmkit.train import TrainConfig, apply_overrides, from_dict, load_yaml, to_dict


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(lr=-1e-3), "lr must be positive, got -0.001"),
        (dict(epochs=0), "epochs must be positive, got 0"),
        (dict(optimizer="adam"), "optimizer must be one of adamw, sgd; got 'adam'"),
        (dict(schedule="step"), "schedule must be one of constant, cosine"),
        (dict(clip_norm=0.0), "clip_norm must be positive, got 0.0"),
        (dict(precision="fp16"), "precision must be one of fp32, bf16, auto; got 'fp16'"),
        (dict(nesterov=True), "nesterov needs optimizer='sgd' and momentum > 0"),
        (dict(betas=(0.9,)), "betas must be two numbers in [0, 1)"),
        (dict(schedule="plateau", warmup_steps=3), "warmup_steps does not apply to schedule"),
        (dict(max_steps=-5), "max_steps must be positive, got -5"),
    ],
)
def test_validation(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(**kwargs)


def test_from_dict_converts_and_rejects_unknown_keys():
    config = from_dict(
        TrainConfig,
        {
            "lr": "3e-4",
            "epochs": "2",
            "clip_norm": "none",
            "betas": "[0.8, 0.99]",
            "progress": "false",
        },
    )
    assert config.lr == 3e-4 and config.epochs == 2 and config.clip_norm is None
    assert config.betas == (0.8, 0.99) and config.progress is False
    with pytest.raises(ValueError, match=r"unknown key\(s\) train.learning_rate for TrainConfig"):
        from_dict(TrainConfig, {"learning_rate": 1.0}, "train")
    with pytest.raises(ValueError, match="train.epochs must be int, got 'two'"):
        from_dict(TrainConfig, {"epochs": "two"}, "train")
    with pytest.raises(ValueError, match="train.epochs must be an integer, got 1.5"):
        from_dict(TrainConfig, {"epochs": 1.5}, "train")
    assert from_dict(TrainConfig, to_dict(config)) == config


def test_overrides_and_yaml(tmp_path):
    path = tmp_path / "preset.yaml"
    path.write_text("# a comment\ntrain:\n  lr: 1.0e-3\nmodel:\n  hidden_size: 8\n")
    data = apply_overrides(load_yaml(path), ["--train.lr", "3e-4", "--model.cell=gru"])
    assert data == {"train": {"lr": "3e-4"}, "model": {"hidden_size": 8, "cell": "gru"}}
    with pytest.raises(ValueError, match="override --train.lr needs a value"):
        apply_overrides({}, ["--train.lr"])
    with pytest.raises(ValueError, match="unrecognised argument 'bogus'"):
        apply_overrides({}, ["bogus", "1"])
    # a top-level key, and an unknown one named by from_dict
    assert apply_overrides({"train": {}}, ["--patience", "5"]) == {"train": {}, "patience": "5"}
    with pytest.raises(ValueError, match="unknown key.s. bogus for TrainConfig"):
        from_dict(TrainConfig, apply_overrides({}, ["--bogus", "1"]))
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_yaml(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="a config must be a mapping of sections"):
        load_yaml(tmp_path / "list.yaml")


def test_overrides_reach_nested_sections_without_changing_the_input():
    data = {"model": {"encoder": {"peephole": True}, "size": 4}, "seed": 1}
    out = apply_overrides(data, ["--model.encoder.layer_norm", "true", "--model.size=8"])
    assert out == {
        "model": {"encoder": {"peephole": True, "layer_norm": "true"}, "size": "8"},
        "seed": 1,
    }
    assert data == {"model": {"encoder": {"peephole": True}, "size": 4}, "seed": 1}
    with pytest.raises(ValueError, match="cannot override model.size.x: model.size is not a"):
        apply_overrides(data, ["--model.size.x", "1"])

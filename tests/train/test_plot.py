"""plot-log: the figures hold the logged values, and a Trainer run's logs become PNG files."""

import argparse
import json

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from lstmkit.cli import tools
from lstmkit.train import TrainConfig, Trainer
from lstmkit.train.distributed import loader
from lstmkit.train.plot import log_figures, plot_log, read_log, smooth
from tests.train.tiny import TinyModel, tiny_dataset, tiny_step

STEP_LOG = """\
step,epoch,loss,lr,grad_norm,clipped,skipped,acc
1,1,1.0,0.1,2.0,1,0,0.5
2,1,0.5,0.1,0.5,0,0,0.6
3,2,0.25,0.05,inf,0,1,0.7
4,2,0.125,0.05,3.0,1,0,0.8
"""
EPOCH_LOG = """\
epoch,loss,acc,lr,val_loss,val_acc
1,0.75,0.55,0.1,0.6,0.5
2,0.2,0.75,0.05,0.3,0.9
"""


def _lines(figure):
    return {line.get_label(): line for line in figure.axes[0].get_lines()}


@pytest.fixture
def logged(tmp_path):
    (tmp_path / "train_log.csv").write_text(STEP_LOG)
    (tmp_path / "epoch_log.csv").write_text(EPOCH_LOG)
    (tmp_path / "metrics.json").write_text(json.dumps({"clip_norm": 1.0, "history": []}))
    return tmp_path


def test_smooth_is_a_debiased_moving_average():
    np.testing.assert_allclose(smooth(np.array([2.0, 2.0, 2.0]), 0.9), [2.0, 2.0, 2.0])
    # 0.5 * 0 + 0.5 * 1 = 0.5, debiased by 1 - 0.5**2
    np.testing.assert_allclose(smooth(np.array([0.0, 1.0]), 0.5), [0.0, 0.5 / 0.75])
    np.testing.assert_allclose(smooth(np.array([np.nan, 4.0, np.nan]), 0.5), [np.nan, 4.0, 4.0])
    np.testing.assert_allclose(smooth(np.array([1.0, 3.0]), 0.0), [1.0, 3.0])


def test_figures_hold_the_logged_values(logged):
    figures = log_figures(logged, smoothing=0.5)
    assert list(figures) == ["loss", "acc", "grad_norm", "lr"]

    loss = _lines(figures["loss"])
    np.testing.assert_allclose(loss["per step"].get_ydata(), [1.0, 0.5, 0.25, 0.125])
    np.testing.assert_allclose(
        loss["smoothed (0.5)"].get_ydata(), smooth(np.array([1.0, 0.5, 0.25, 0.125]), 0.5)
    )
    # epoch means are drawn at each epoch's last step
    np.testing.assert_allclose(loss["train (epoch mean)"].get_xdata(), [2, 4])
    np.testing.assert_allclose(loss["train (epoch mean)"].get_ydata(), [0.75, 0.2])
    np.testing.assert_allclose(loss["val"].get_ydata(), [0.6, 0.3])
    acc = _lines(figures["acc"])
    np.testing.assert_allclose(acc["per step"].get_ydata(), [0.5, 0.6, 0.7, 0.8])
    np.testing.assert_allclose(acc["val"].get_ydata(), [0.5, 0.9])

    ax = figures["grad_norm"].axes[0]
    assert ax.get_yscale() == "log"
    grad = _lines(figures["grad_norm"])
    np.testing.assert_allclose(grad["per step"].get_xdata(), [1, 2, 4])  # the inf is left out
    clipped = ax.collections[0]
    np.testing.assert_allclose(clipped.get_offsets(), [[1, 2.0], [4, 3.0]])
    assert clipped.get_label() == "clipped (2 of 4 steps)"
    np.testing.assert_allclose(grad["clip_norm"].get_ydata(), [1.0, 1.0])
    np.testing.assert_allclose(grad["non-finite (skipped)"].get_xdata(), [3, 3])

    np.testing.assert_allclose(
        _lines(figures["lr"])["per step"].get_ydata(), [0.1, 0.1, 0.05, 0.05]
    )


def test_without_an_epoch_log_only_the_step_curves_are_drawn(logged):
    (logged / "epoch_log.csv").unlink()
    (logged / "metrics.json").unlink()
    figures = log_figures(logged)
    assert set(_lines(figures["loss"])) == {"per step", "smoothed (0.9)"}
    assert "clip_norm" not in _lines(figures["grad_norm"])


def test_missing_or_empty_logs_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope" / "train_log.csv")):
        plot_log(tmp_path / "nope")
    (tmp_path / "train_log.csv").write_text("step,epoch,loss\n")
    with pytest.raises(ValueError, match=r"train_log\.csv has no steps yet"):
        plot_log(tmp_path)


def test_plot_log_of_a_trainer_run_writes_the_pngs(tmp_path, capsys):
    torch.manual_seed(0)
    data = tiny_dataset()
    config = TrainConfig(epochs=2, lr=1e-2, clip_norm=0.05, progress=False, tensorboard=False)
    trainer = Trainer(config, tiny_step, out_dir=tmp_path / "run")
    trainer.fit(TinyModel(), loader(data, 16, shuffle=False), loader(data, 32, shuffle=False))
    steps = read_log(tmp_path / "run" / "train_log.csv")
    assert len(steps["step"]) == 8  # 2 epochs x 64 / 16

    paths = plot_log(tmp_path / "run")
    assert [p.name for p in paths] == ["loss.png", "sign_acc.png", "grad_norm.png", "lr.png"]
    for path in paths:
        assert path.parent == tmp_path / "run" / "plots"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert imread(path).shape[:2] == (400, 700)  # FIGSIZE at DPI
    figures = log_figures(tmp_path / "run")
    loss = _lines(figures["loss"])
    np.testing.assert_allclose(loss["per step"].get_ydata(), steps["loss"])
    np.testing.assert_allclose(loss["train (epoch mean)"].get_xdata(), [4, 8])
    clipped = figures["grad_norm"].axes[0].collections[0]
    assert len(clipped.get_offsets()) == int(steps["clipped"].sum()) > 0
    np.testing.assert_allclose(_lines(figures["grad_norm"])["clip_norm"].get_ydata(), 0.05)

    capsys.readouterr()  # the Trainer's epoch summaries
    parser = argparse.ArgumentParser(prog="lstmkit")
    tools.add_commands(parser.add_subparsers(dest="command"))
    args, overrides = parser.parse_known_args(
        ["plot-log", str(tmp_path / "run"), "--out", str(tmp_path / "pngs")]
    )
    assert args.func(args, overrides) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(tmp_path / "pngs" / p.name) for p in paths]

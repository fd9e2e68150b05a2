"""lstmkit: the LSTM as real software."""

from lstmkit.version import __version__

__all__ = ["__version__", "load"]


def load(model_dir, device=None):
    """The :class:`~lstmkit.tasks.base.Predictor` of any lstmkit model directory, loaded once:
    ``lstmkit.load("runs/sentiment").predict(["A moving film."])``. The task is read from
    its ``config.json``; ``device``: ``auto`` (default), ``cpu``, ``cuda``."""
    from lstmkit.tasks.run import load as load_model_dir

    return load_model_dir(model_dir, device)

"""Session-wide tiny model directories (trained once for tests/serve and tests/export)."""

import pytest
import torch

from tests.serve.fixtures import train_lm, train_sentiment


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("served")
    dirs = {"imdb": train_sentiment(root / "imdb"), "chars": train_lm(root)}
    torch.set_num_threads(threads)
    return dirs

"""The tiny model directories of tests/serve (shared with tests/export: trained once)."""

import pytest

from tests.serve.fixtures import trained_once


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    return trained_once(tmp_path_factory)

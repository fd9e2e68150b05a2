import pytest

from tests.train.tiny import tiny_dataset


@pytest.fixture
def tiny_data():
    return tiny_dataset()

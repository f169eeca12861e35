"""Fixtures shared by the test modules."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """One Trifeature cache directory per module: the first test generates the images, the others reuse them."""
    return tmp_path_factory.mktemp("data")

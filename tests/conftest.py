import os

import pytest
import torch

os.environ.setdefault("SHADOWKV_LAB_QUIET", "1")
torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def real_model_path():
    """The 0.5B offline default, assembled from its PyPI parts once (cached outside the repo)."""
    from shadowkv_lab.models import prepare_model

    return prepare_model("qwen2.5-coder-0.5b")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (runs on the lent GPU, not in CI)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)

"""The decode step's forward (attention.decode_forward) is the model's own forward for one token per row."""

import torch

from shadowkv_lab.attention import decode_forward, patch_model
from shadowkv_lab.testing import TINY_ARCHS, tiny_model

import pytest


@pytest.mark.parametrize("arch", TINY_ARCHS)
@torch.inference_mode()
def test_decode_forward_equals_model_forward(arch):
    """Outside a session the patched attention runs the original forward: decode_forward must then give the logits
    of model(...) bit for bit (same modules, same order; only the mask machinery is skipped)."""
    model, _ = tiny_model(arch, seed=1)
    patch_model(model)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 300, (5, 1), generator=g)
    pos = torch.tensor([[0], [0], [0], [0], [0]])  # one token, no cache: position 0 is the only causal one
    ref = model(input_ids=ids, position_ids=pos, use_cache=False).logits[:, -1]
    assert torch.equal(decode_forward(model, ids, pos), ref)

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


def test_cpu_fp32_linears_multiply_bf16_layers_in_fp32_during_prefill_only():
    import types

    from shadowkv_lab.generation import cpu_fp32_linears, prefill

    model, _ = tiny_model("qwen2", seed=1, dtype=torch.bfloat16)
    lin = model.model.layers[0].mlp.down_proj
    x = torch.randn(5, lin.in_features, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    with cpu_fp32_linears(model):
        got = lin(x)
    want = torch.nn.functional.linear(x.float(), lin.weight.float()).to(torch.bfloat16)  # fp32 sum, one rounding
    assert got.dtype == torch.bfloat16 and torch.equal(got, want)
    assert "forward" not in lin.__dict__  # the model's own Linear again after the block

    other = model.model.layers[0].mlp.up_proj  # a module another context patched keeps its forward
    other.forward = types.MethodType(lambda self, x: torch.zeros(1), other)
    with cpu_fp32_linears(model):
        assert torch.equal(other(x), torch.zeros(1))
    assert "forward" in other.__dict__
    del other.forward

    ids = torch.arange(3, 40)
    a, b = prefill(model, ids), prefill(model, ids)  # the fp32 weights are made once and reused
    assert torch.equal(a.first_logits, b.first_logits) and len(model._skv_fp32_linears) > 0

    fp32, _ = tiny_model("qwen2", seed=1)
    with cpu_fp32_linears(fp32):  # nothing to widen
        assert "forward" not in fp32.model.layers[0].mlp.down_proj.__dict__

"""CUDA-only checks (run on the lent GPU; skipped in CI): real offload placement and the memory report vs the allocator."""

import gc

import pytest
import torch

from shadowkv_lab import get_preset
from shadowkv_lab.generation import build_cache, decode, prefill
from shadowkv_lab.testing import tiny_model

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("preset", ["shadowkv", "shadowkv_fullkeys", "yakv", "full"])
def test_allocation_delta_matches_report(preset):
    model, _ = tiny_model("llama", seed=0, dtype=torch.bfloat16, device="cuda", n_layers=4, n_heads=8, n_kv_heads=2,
                          head_dim=128, max_position_embeddings=32768)
    ids = torch.randint(3, 384, (16384,))
    # One throwaway build first: cuBLAS/cuSOLVER allocate per-process workspaces (32 MiB on Hopper) on first use,
    # through the caching allocator; they belong to the process, not to any cache.
    build_cache(model, prefill(model, ids[:4096]), get_preset(preset))
    gc.collect()  # earlier parametrisations' caches must not be freed inside the measured window
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    state = prefill(model, ids)
    cache = build_cache(model, state, get_preset(preset))
    del state  # the cache must own what it keeps (the full cache adopts the prefill KV, sparse ones copy)
    gc.collect()
    torch.cuda.synchronize()
    delta = torch.cuda.memory_allocated() - before
    rep = cache.memory_report()
    reported = rep.total("device", packed=False)
    assert abs(delta - reported) / reported < 0.02, (delta, reported)
    if preset != "full":
        for lay in cache.layers:
            assert lay.values.data.device.type == "cpu" if hasattr(lay.values.data, "device") else True
            assert rep.offloaded_bytes > 0


def test_offloaded_rows_live_in_pinned_host_memory():
    model, _ = tiny_model("qwen2", seed=0, dtype=torch.bfloat16, device="cuda", n_layers=2, head_dim=64)
    state = prefill(model, torch.randint(3, 384, (4096,)))
    cache = build_cache(model, state, get_preset("shadowkv_fullkeys"))
    lay = cache.layers[0]
    assert lay.values.data.device.type == "cpu" and lay.values.data.is_pinned()
    assert lay.keys.data.device.type == "cpu" and lay.keys.data.is_pinned()
    assert lay.local_k.device.type == "cuda"
    out = decode(model, [cache], [int(state.first_logits.argmax())], 4, stop_ids=set())[0]
    assert len(out.token_ids) == 4

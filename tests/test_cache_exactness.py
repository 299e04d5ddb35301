"""Exactness invariants of the offloading cache against Hugging Face full attention (docs/algorithms.md: exact prefill, positions stay absolute)."""

import pytest
import torch
from transformers import DynamicCache

from shadowkv_lab import OffloadConfig, generate
from shadowkv_lab.generation import build_cache, decode, prefill
from shadowkv_lab.testing import TINY_ARCHS, tiny_model

N_NEW = 64
COVER_ALL = dict(rank=-1, chunk_size=8, local_budget=32, outlier_chunks=4, sparse_budget=10**6)


def hf_greedy_logits(model, ids: torch.Tensor, n_new: int):
    """Reference: HF full attention, greedy, returning generated ids and per-step logits (fp32)."""
    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids[None], past_key_values=cache, use_cache=True)
    logits = [out.logits[0, -1].float()]
    toks = [int(logits[-1].argmax())]
    for _ in range(n_new - 1):
        out = model(input_ids=torch.tensor([[toks[-1]]]), past_key_values=cache, use_cache=True)
        logits.append(out.logits[0, -1].float())
        toks.append(int(logits[-1].argmax()))
    return toks, torch.stack(logits)


def ours_logits(model, ids, config, n_new):
    state = prefill(model, ids)
    cache = build_cache(model, state, config)
    logits = [state.first_logits]
    out = decode(model, [cache], [int(state.first_logits.argmax())], n_new, stop_ids=set(),
                 on_logits=lambda rows, lg: logits.append(lg[0].float()))
    return out[0].token_ids, torch.stack(logits[:n_new]), cache


@pytest.mark.parametrize("arch", TINY_ARCHS)
@torch.inference_mode()
def test_budget_covering_everything_equals_hf_full_attention(arch):
    model, _ = tiny_model(arch, seed=1)
    ids = torch.randint(3, 384, (333,), generator=torch.Generator().manual_seed(0))
    ref_toks, ref_logits = hf_greedy_logits(model, ids, N_NEW)
    for cfg in (OffloadConfig(name="cover", **COVER_ALL), OffloadConfig(name="full", kind="full"),
                OffloadConfig(name="oracle_cover", selection="oracle", **COVER_ALL)):
        toks, logits, cache = ours_logits(model, ids, cfg, N_NEW)
        assert toks == ref_toks, cfg.name
        assert (logits - ref_logits).abs().max().item() < 1e-4, cfg.name
        assert not cache.fallback


@torch.inference_mode()
def test_small_budget_changes_output_and_respects_budget():
    model, _ = tiny_model("qwen2", seed=1)
    ids = torch.randint(3, 384, (400,), generator=torch.Generator().manual_seed(1))
    _, ref_logits = hf_greedy_logits(model, ids, 8)
    cfg = OffloadConfig(name="tight", rank=-1, chunk_size=8, local_budget=32, outlier_chunks=2, sparse_budget=16)
    _, logits, cache = ours_logits(model, ids, cfg, 8)
    assert (logits[1:] - ref_logits[1:]).abs().max().item() > 1e-3  # dropping tokens must show
    assert torch.equal(logits[0], ref_logits[0].to(logits.dtype)) or torch.allclose(logits[0], ref_logits[0], atol=1e-5)
    for lay in cache.layers:
        assert lay.last_selection.shape == (2, 16)


@torch.inference_mode()
def test_full_rank_equals_exact_keys():
    model, _ = tiny_model("llama", seed=2, n_kv_heads=2, head_dim=16)
    ids = torch.randint(3, 384, (300,), generator=torch.Generator().manual_seed(2))
    base = dict(chunk_size=4, local_budget=16, outlier_chunks=3, sparse_budget=64)
    t_exact, l_exact, _ = ours_logits(model, ids, OffloadConfig(name="e", rank=-1, **base), 24)
    t_full, l_full, c = ours_logits(model, ids, OffloadConfig(name="r", rank=32, **base), 24)  # H*d = 32
    assert c.layers[0].rank == 32
    assert t_exact == t_full
    assert (l_exact - l_full).abs().max().item() < 1e-3


@pytest.mark.parametrize("L", [5, 30, 40])
@torch.inference_mode()
def test_short_prompts_fall_back_to_exact(L):
    model, _ = tiny_model("qwen2", seed=3)
    ids = torch.randint(3, 384, (L,), generator=torch.Generator().manual_seed(L))
    ref, _ = hf_greedy_logits(model, ids, 12)
    cfg = OffloadConfig(name="s", rank=8, chunk_size=8, local_budget=32, outlier_chunks=1, sparse_budget=8)
    toks, _, cache = ours_logits(model, ids, cfg, 12)
    assert cache.fallback and "no candidate" in cache.fallback[0]
    assert toks == ref


@pytest.mark.parametrize("n_heads,n_kv", [(2, 2), (6, 2), (7, 1)])  # GQA groups 1, 3, 7
@torch.inference_mode()
def test_gqa_groups(n_heads, n_kv):
    model, _ = tiny_model("qwen3", seed=4, n_heads=n_heads, n_kv_heads=n_kv, head_dim=16)
    ids = torch.randint(3, 384, (260,), generator=torch.Generator().manual_seed(4))
    ref, ref_logits = hf_greedy_logits(model, ids, 16)
    toks, logits, _ = ours_logits(model, ids, OffloadConfig(name="c", **COVER_ALL), 16)
    assert toks == ref and (logits - ref_logits).abs().max().item() < 1e-4
    # and a sparse config runs with per-group scoring for both rules
    for scoring in ("softmax_max", "mean_dot"):
        cfg = OffloadConfig(name="s", rank=8, chunk_size=4, local_budget=16, outlier_chunks=2, sparse_budget=32, scoring=scoring)
        toks, _, cache = ours_logits(model, ids, cfg, 4)
        assert len(toks) == 4 and cache.layers[0].last_selection.shape == (n_kv, 32)


@torch.inference_mode()
def test_llama3_rope_scaling_beyond_original_context():
    scaling = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 64}
    model, _ = tiny_model("llama", seed=5, rope_scaling=scaling)
    assert model.config.rope_parameters["rope_type"] == "llama3"
    ids = torch.randint(3, 384, (300,), generator=torch.Generator().manual_seed(5))  # well past 64
    ref, ref_logits = hf_greedy_logits(model, ids, 16)
    toks, logits, _ = ours_logits(model, ids, OffloadConfig(name="c", **COVER_ALL), 16)
    assert toks == ref and (logits - ref_logits).abs().max().item() < 1e-4
    # Reconstructed keys get RoPE at their original positions: with exact keys, the sparse path's keys equal
    # the prefill's post-RoPE keys (which HF computed with llama3 scaling).
    state = prefill(model, ids)
    cache = build_cache(model, state, OffloadConfig(name="s", rank=-1, chunk_size=8, local_budget=32, outlier_chunks=2, sparse_budget=64))
    lay = cache.layers[0]
    pos = torch.tensor([[3, 100, 200], [7, 150, 250]])
    k, v = lay.selected_kv(pos)
    want = torch.gather(state.k_post[0], 1, pos.unsqueeze(-1).expand(-1, -1, k.shape[-1]))
    assert torch.allclose(k, want, atol=1e-5)


def test_generate_api_on_strings_and_stop_tokens():
    model, tok = tiny_model("qwen2", seed=6)
    res = generate(model, tok, "Paris is the capital of", "shadowkv", max_new_tokens=5)
    assert res.new_tokens <= 5 and res.finish_reason in ("stop", "length")
    assert res.truncated == (res.finish_reason == "length")
    assert isinstance(res.text, str) and res.prompt_tokens > 5

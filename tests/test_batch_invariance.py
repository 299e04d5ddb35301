"""Batch invariance: a cell's tokens do not depend on its batch mates, the padding of the stack, the wave size or
recording (cache.batched, BLOCK), in the models' default dtype (bf16).

fp32 models are not covered: MKL's fp32 GEMM rounds a row differently with the number of rows in the product
(a linear layer over 1, 2-3 or >= 4 rows), outside the cache; its bf16 GEMM does not."""

import dataclasses
import functools

import pytest
import torch

from shadowkv_lab.cache.batched import BLOCK, attend_masked, bmm, softmax_invariant, tree_sum
from shadowkv_lab.cache.presets import PRESETS
from shadowkv_lab.generation import build_cache, decode, paired_lone_rows, prefill
from shadowkv_lab.testing import tiny_model

SMALL = dict(local_budget=16, sparse_budget=48)
TARGETS = [
    dataclasses.replace(PRESETS["shadowkv"], rank=8, outlier_chunks=3, **SMALL),
    dataclasses.replace(PRESETS["yakv"], landmark_format="higgs-2-16", key_format="higgs-2-16",
                        value_format="higgs-2-16", **SMALL),
    dataclasses.replace(PRESETS["shadowkv_fullkeys"], name="bf16_scores", score_precision="bf16", outlier_chunks=2, **SMALL),
    dataclasses.replace(PRESETS["shadowkv_serving"], rank=8, outlier_chunks=3, **SMALL),
    dataclasses.replace(PRESETS["oracle"], outlier_chunks=3, **SMALL),
    dataclasses.replace(PRESETS["yakv_exactkv"], name="nvfp4_values", value_format="nvfp4", **SMALL),  # a stack of its own
    dataclasses.replace(PRESETS["yakv_lut"], landmark_format="higgs-2-16", key_format="higgs-2-16",
                        value_format="higgs-2-16", **SMALL),  # landmarks scored from their codes (fp32 on torch)
    PRESETS["full"],
]


def _tokens(model, rows, cap, batched=True):
    """rows: [(state, config, record)] -> each row's tokens from one decode call."""
    caches = [build_cache(model, st, cfg, record=rec) for st, cfg, rec in rows]
    firsts = [int(st.first_logits.argmax()) for st, _, _ in rows]
    caps = [cap(i) for i in range(len(rows))] if callable(cap) else cap
    return [o.token_ids for o in decode(model, caches, firsts, caps, stop_ids=set(), batched=batched)]


def test_tree_sum_ignores_trailing_zeros():
    g = torch.Generator().manual_seed(0)
    for n in (1, 3, 5, 8, 13):
        x = torch.randn(4, n, 7, generator=g)
        for pad in (1, 3, 20):
            padded = torch.cat([x, torch.zeros(4, pad, 7)], 1)
            assert torch.equal(tree_sum(padded, 1), tree_sum(x, 1))


def test_softmax_and_scores_ignore_padding_and_batch_mates():
    g = torch.Generator().manual_seed(1)
    q = torch.randn(1, 2, 7, 64, generator=g)
    k, v = torch.randn(1, 2, 200, 64, generator=g), torch.randn(1, 2, 200, 64, generator=g)
    valid = torch.ones(1, 200, dtype=torch.bool)
    alone = attend_masked(q, [(k[:, :, :150], v[:, :, :150], valid[:, :150]), (k[:, :, 150:], v[:, :, 150:], valid[:, 150:])], 0.125)
    for pad, mates in ((1, 0), (BLOCK, 1), (3 * BLOCK + 5, 4)):
        B = 1 + mates
        kk = torch.cat([torch.cat([k, torch.zeros(1, 2, pad, 64)], 2), torch.randn(mates, 2, 200 + pad, 64, generator=g)])
        vv = torch.cat([torch.cat([v, torch.zeros(1, 2, pad, 64)], 2), torch.randn(mates, 2, 200 + pad, 64, generator=g)])
        qq = torch.cat([q, torch.randn(mates, 2, 7, 64, generator=g)])
        m = torch.ones(B, 200 + pad, dtype=torch.bool)
        m[0, 200:] = False
        segs = [(kk[:, :, :150], vv[:, :, :150], m[:, :150]), (kk[:, :, 150:], vv[:, :, 150:], m[:, 150:])]
        assert torch.equal(attend_masked(qq, segs, 0.125)[0], alone[0]), (pad, mates)
        s = torch.randn(2, 3, 2 * BLOCK, generator=g)
        s[0, :, BLOCK + 3 :] = float("-inf")
        own = torch.cat([s[0, :, : BLOCK + 3], torch.full((3, BLOCK - 3), float("-inf"))], -1)
        assert torch.equal(softmax_invariant(s)[0, :, : BLOCK + 3], softmax_invariant(own)[:, : BLOCK + 3])
    a, b = torch.randn(1, 7, 64, generator=g), torch.randn(1, 64, BLOCK, generator=g)
    assert torch.equal(bmm(a, b), bmm(torch.cat([a, a]), torch.cat([b, b]))[:1])


@torch.inference_mode()
def test_a_cell_gets_identical_tokens_in_any_batch():
    """Each target cell, run alone (B = 1), recorded, and inside batches of other methods, other samples and other
    sizes (so padding, group size, re-stacking as rows finish and the wave size all change), gives identical tokens."""
    model, _ = tiny_model("qwen2", seed=3, dtype=torch.bfloat16)
    g = torch.Generator().manual_seed(4)
    states = [prefill(model, torch.randint(3, 384, (n,), generator=g)) for n in (301, 213, 407, 30)]
    cap = 14
    for cfg in TARGETS:
        target = (states[0], cfg, False)
        alone = _tokens(model, [target], cap)[0]
        assert _tokens(model, [(states[0], cfg, True)], cap)[0] == alone, (cfg.name, "recorded")
        mates = [(st, c, False) for st in states[1:] for c in TARGETS]
        batch = [mates[0], target] + mates[1:]
        got = _tokens(model, batch, lambda i: cap if i == 1 else 3 + i % 9)  # ragged stops re-stack the groups
        assert got[1] == alone, (cfg.name, "big batch")
        small = [(states[2], cfg, True), (states[1], cfg, False), (states[0], cfg, True)]
        assert _tokens(model, small, [5, 9, cap])[2] == alone, (cfg.name, "same method, recorded")


REAL_MODEL_METHODS = ["full", "shadowkv", "yakv"]


@torch.inference_mode()
def test_a_lone_row_runs_the_linear_of_a_batch():
    """The Qwen2.5-0.5B MLP's down projection (K = 4864 > 1024): under paired_lone_rows every row of a batch equals
    the same row decoded alone, bit for bit, at every batch size and position."""
    g = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(4864, 896, bias=True).to(torch.bfloat16)
    x = torch.randn(12, 1, 4864, generator=g).to(torch.bfloat16)
    with paired_lone_rows(lin):
        alone = [lin(x[j : j + 1]) for j in range(12)]
        for m in (2, 3, 5, 12):
            out = lin(x[:m])
            assert all(torch.equal(out[j : j + 1], alone[j]) for j in range(m)), m
    assert "forward" not in lin.__dict__  # the context leaves the module as it found it


@pytest.mark.slow
@pytest.mark.parametrize("name", REAL_MODEL_METHODS)
@torch.inference_mode()
def test_real_model_cell_identical_in_any_batch(real_model_path, name):
    """The 0.5B in bf16, a ~2k-token prompt, 64 new tokens: a cell alone and inside a batch of other methods and
    samples (recorded or not) gives identical tokens."""
    model, tok = _real_model(str(real_model_path))
    g = torch.Generator().manual_seed(0)
    vocab = min(tok.vocab_size, 20000)
    states = [prefill(model, torch.randint(100, vocab, (n,), generator=g)) for n in (2048, 1700)]
    cfgs = [PRESETS["full"], PRESETS["shadowkv"], PRESETS["yakv"]]
    cfg = PRESETS[name]
    alone = _tokens(model, [(states[0], cfg, False)], 64)[0]
    batch = [(states[1], c, False) for c in cfgs] + [(states[0], c, c is not cfg) for c in cfgs]
    got = _tokens(model, batch, lambda i: 64 if i >= 3 else 20)
    assert got[3 + cfgs.index(cfg)] == alone, cfg.name
    assert _tokens(model, [(states[0], cfg, True)], 64)[0] == alone, (cfg.name, "recorded")


@functools.lru_cache(maxsize=1)
def _real_model(path: str):
    from shadowkv_lab.models import load_model

    return load_model(path, dtype="bf16")

"""End-to-end on the real 0.5B default (Qwen2.5-Coder-0.5B-Instruct from PyPI parts). Marked slow; CI runs it."""

import pytest
import torch

from shadowkv_lab import OffloadConfig, generate, get_preset, load_model
from shadowkv_lab.cache.memory import analytic_bytes_per_token
from shadowkv_lab.generation import build_cache, decode, encode_prompt, prefill, stop_token_ids

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bf16_model(real_model_path):
    return load_model(str(real_model_path), device="cpu", dtype="bf16")


def test_capital_of_france(bf16_model):
    model, tok = bf16_model
    for method in ("full", "shadowkv", "yakv"):
        res = generate(model, tok, "What is the capital of France? Answer in one word.", method, max_new_tokens=8)
        assert "Paris" in res.text, (method, res.text)


def test_cover_all_budget_equals_hf_on_2k_prompt(real_model_path):
    model, tok = load_model(str(real_model_path), device="cpu", dtype="fp32")
    text = " ".join(f"Record {i}: the widget number {i} weighs {i * 7 % 97} grams and costs {i * 13 % 89} dollars." for i in range(110))
    ids = encode_prompt(tok, text + "\nWhat does widget 42 weigh?")
    assert 1800 <= ids.numel() <= 2600
    n_new = 24
    with torch.inference_mode():
        ref = model.generate(ids[None], max_new_tokens=n_new, do_sample=False)[0, ids.numel():].tolist()
        state = prefill(model, ids)
        cfg = OffloadConfig(name="cover", rank=-1, chunk_size=8, local_budget=32, outlier_chunks=48, sparse_budget=10**6)
        cache = build_cache(model, state, cfg)
        out = decode(model, [cache], [int(state.first_logits.argmax())], n_new, stop_ids=stop_token_ids(model, tok))[0]
    assert len(ref) > 10 and out.token_ids == ref
    # and the real ShadowKV preset compresses: most bytes leave the device
    cfg = get_preset("shadowkv_scaled")
    rep = build_cache(model, state, cfg).memory_report()
    want = analytic_bytes_per_token(cfg, 2, 64, state.prompt_len, dtype_bytes=4)
    assert rep.offloaded_bytes > 0
    assert abs(rep.per_token_per_layer("device") - want["device"]) / want["device"] < 0.05
    assert abs(rep.per_token_per_layer("offloaded") - want["offloaded"]) / want["offloaded"] < 0.05

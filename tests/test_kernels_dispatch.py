"""dispatch.sparse_decode (the kernel decode step) against SparseLayer's torch reference, per preset layout.

CPU: Triton interpreter (set before triton is imported). GPU: TRITON_INTERPRET=0 runs the compiled kernels with
offloaded rows in pinned host memory."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

pytest.importorskip("triton")

from shadowkv_lab.cache.config import OffloadConfig  # noqa: E402
from shadowkv_lab.cache.layer import LayerContext, SparseLayer, attend  # noqa: E402
from shadowkv_lab.kernels import dispatch  # noqa: E402
from shadowkv_lab.kernels.common import rope_table, rope_table_from_freqs, torch_rope  # noqa: E402

GPU = os.environ["TRITON_INTERPRET"] == "0" and torch.cuda.is_available()
DEV = torch.device("cuda" if GPU else "cpu")

H, G, D, L = 2, 3, 64, 1500


def _config(name, **kw):
    try:
        return OffloadConfig(name=name, **kw)
    except ValueError as e:  # a HIGGS grid not committed yet
        pytest.skip(str(e))


CONFIGS = {
    "shadowkv": dict(rank=48, chunk_size=8, local_budget=32, outlier_chunks=6, sparse_budget=256),
    "shadowkv_serving": dict(rank=48, chunk_size=8, local_budget=32, outlier_chunks=6, sparse_budget=256, scoring="mean_dot"),
    "shadowkv_fullkeys": dict(rank=-1, chunk_size=8, local_budget=32, outlier_chunks=6, sparse_budget=256),
    "yakv": dict(rank=-1, chunk_size=1, local_budget=64, outlier_chunks=0, sparse_budget=0.03125,
                 landmark_format="higgs-4-256", key_format="higgs-2-256", value_format="higgs-2-256"),
    "yakv_fp8": dict(rank=-1, chunk_size=1, local_budget=64, outlier_chunks=0, sparse_budget=0.0625, score_precision="fp32",
                     landmark_format="fp8", key_format="fp8", value_format="fp8"),
    "chunk4_bf16": dict(rank=-1, chunk_size=4, local_budget=64, outlier_chunks=0, sparse_budget=128, landmark_format="bf16"),
}


def _layer(cfg, seed, dtype=torch.bfloat16):
    gen = torch.Generator().manual_seed(seed)
    inv = 1.0 / (10000.0 ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    tab = rope_table_from_freqs(inv.to(DEV), 4096, torch.bfloat16)
    rope = lambda x, pos: torch_rope(x, pos, tab)  # noqa: E731
    # keys with a shared direction per head and low-rank structure, so attention is peaky and SVD meaningful
    base = torch.randn(H, 1, D, generator=gen) * 2
    k_pre = (base + torch.randn(H, L, 16, generator=gen) @ torch.randn(16, D, generator=gen) / 2
             + 0.3 * torch.randn(H, L, D, generator=gen)).to(DEV, dtype)
    pos = torch.arange(L, device=DEV).expand(H, L)
    k_post = rope(k_pre, pos)
    v = torch.randn(H, L, D, generator=gen).to(DEV, dtype)
    ctx = LayerContext(rope=rope, scaling=D ** -0.5, n_q_heads=H * G, compute_device=DEV,
                       offload_device=torch.device("cpu"), pin=GPU)
    return SparseLayer(cfg, k_pre, k_post, v, ctx), rope, tab


@pytest.mark.parametrize("name", list(CONFIGS))
def test_sparse_decode_matches_reference(name):
    cfg = _config(name, **CONFIGS[name])
    layer, rope, tab = _layer(cfg, seed=len(name))
    assert dispatch.enabled(layer), dispatch.unsupported_reason(layer)
    assert torch.equal(rope_table(rope, L, D, torch.bfloat16, DEV)[:L], tab[:L])
    gen = torch.Generator().manual_seed(7)
    q_prev = torch.randn(H * G, D, generator=gen)
    overlaps = []
    for step in range(5):
        q_raw = 0.8 * q_prev + 0.6 * torch.randn(H * G, D, generator=gen)  # correlated queries: cache hits happen
        q_prev = q_raw
        p = torch.full((H, 1), L + step, device=DEV)
        q = rope((q_raw * 1.5).to(DEV, torch.bfloat16).view(H, G, D), p.expand(H, G)).view(H * G, D)
        k_pre_new = torch.randn(H, 1, D, generator=gen).to(DEV, torch.bfloat16)
        k_post_new = rope(k_pre_new, p)[:, 0]
        v_new = torch.randn(H, D, generator=gen).to(DEV, torch.bfloat16)
        ref_pos = layer.select(q.view(H, G, D))
        out = dispatch.sparse_decode(layer, q, k_pre_new[:, 0], k_post_new, v_new)
        pos = layer.last_selection
        assert pos.shape == ref_pos.shape
        overlaps.append(sum(len(set(pos[h].tolist()) & set(ref_pos[h].tolist())) for h in range(H)) / pos.numel())
        # the attention itself, on the kernels' own selection, against the reference gather + attend
        sk, sv = layer.selected_kv(pos)
        gk, gv = layer.gen.view()
        ref = attend(q.view(H, G, D), torch.cat([layer.out_k, layer.local_k, sk, gk], 1),
                     torch.cat([layer.out_v, layer.local_v, sv, gv], 1), layer.ctx.scaling).view(-1, D)
        assert not torch.isnan(out).any()
        err = float((out.float() - ref.float()).norm() / ref.float().norm())
        assert err < (1.5e-2 if GPU else 4e-2), (step, err)  # the interpreter truncates fp32 -> bf16 (no RNE)
    assert min(overlaps) > 0.9, overlaps
    assert 0.0 < dispatch.hit_rate(layer) < 1.0


def test_unsupported_layout_warns_and_declines(monkeypatch):
    monkeypatch.setattr(dispatch, "_WARNED", set())
    cfg = _config("nvfp4_lm", rank=-1, chunk_size=1, local_budget=64, outlier_chunks=0, sparse_budget=64,
                  landmark_format="nvfp4")
    layer, _, _ = _layer(cfg, seed=1)
    assert "nvfp4" in dispatch.unsupported_reason(layer)
    with pytest.warns(UserWarning, match="torch reference"):
        assert dispatch.enabled(layer) is False


def test_env_flag_selects_the_path(monkeypatch):
    """The kernels are the default; SHADOWKV_LAB_KERNELS=0 selects the torch reference; other values are errors."""
    layer, _, _ = _layer(_config("shadowkv", **CONFIGS["shadowkv"]), seed=2)
    monkeypatch.delenv("SHADOWKV_LAB_KERNELS", raising=False)
    assert dispatch.enabled(layer)
    monkeypatch.setenv("SHADOWKV_LAB_KERNELS", "0")
    assert dispatch.enabled(layer) is False
    monkeypatch.setenv("SHADOWKV_LAB_KERNELS", "yes")
    with pytest.raises(ValueError, match="SHADOWKV_LAB_KERNELS='yes': allowed are 1"):
        dispatch.enabled(layer)


def test_fp32_model_runs_the_reference(monkeypatch):
    monkeypatch.setattr(dispatch, "_WARNED", set())  # warned once per process: an earlier test may have used it up
    layer, _, _ = _layer(_config("shadowkv", **CONFIGS["shadowkv"]), seed=2, dtype=torch.float32)
    assert "model dtype torch.float32" in dispatch.unsupported_reason(layer)
    with pytest.warns(UserWarning, match="torch reference"):
        assert dispatch.enabled(layer) is False


def test_higgs_massive_channels_match_reference_exactly():
    """YAKV (HIGGS landmarks, HIGGS token-row keys/values) on keys and queries with a few massive channels, like
    Qwen2.5's (|k| ~ 390, |q| ~ 40 in layer 0): the kernels must select exactly the reference's tokens and rebuild
    bit-identical keys and values. The small channels of such keys are cancellations of large Hadamard terms, so a
    dequantization that sums in another order than the reference's butterfly (a tensor-core product), or that scores
    in the rotated domain with a bf16 rotated query and bf16 grid points, flips bf16 roundings (1 ulp = 2.0 on a
    massive channel) and top-k ties; on Qwen2.5-Coder-1.5B that moved the next logits by up to 12.6."""
    import dataclasses

    from shadowkv_lab import get_preset

    try:
        cfg = dataclasses.replace(get_preset("yakv"), sparse_budget=48)
    except ValueError as e:  # a HIGGS grid not committed yet
        pytest.skip(str(e))
    Hh, Gh, Dd, Ll = 2, 6, 128, 400
    gen = torch.Generator().manual_seed(3)
    inv = 1.0 / (1e6 ** (torch.arange(0, Dd, 2, dtype=torch.float32) / Dd))
    tab = rope_table_from_freqs(inv.to(DEV), 1024, torch.bfloat16)
    rope = lambda x, pos: torch_rope(x, pos, tab)  # noqa: E731
    massive = torch.zeros(Dd)
    massive[[Dd // 2 - 1, Dd - 1, Dd // 2 - 3]] = torch.tensor([300.0, -250.0, 120.0])  # low-frequency channels
    k_pre = (massive + torch.randn(Hh, Ll, 8, generator=gen) @ torch.randn(8, Dd, generator=gen)
             + torch.randn(Hh, Ll, Dd, generator=gen)).to(DEV, torch.bfloat16)
    pos = torch.arange(Ll, device=DEV).expand(Hh, Ll)
    v = torch.randn(Hh, Ll, Dd, generator=gen).to(DEV, torch.bfloat16)
    ctx = LayerContext(rope=rope, scaling=Dd ** -0.5, n_q_heads=Hh * Gh, compute_device=DEV,
                       offload_device=torch.device("cpu"), pin=GPU)
    layer = SparseLayer(cfg, k_pre, rope(k_pre, pos), v, ctx)
    assert dispatch.enabled(layer), dispatch.unsupported_reason(layer)
    for step in range(3):
        q_raw = massive / 8 + 2 * torch.randn(Hh * Gh, Dd, generator=gen)
        p = torch.full((Hh, 1), Ll + step, device=DEV)
        q = rope(q_raw.to(DEV, torch.bfloat16).view(Hh, Gh, Dd), p.expand(Hh, Gh)).view(Hh * Gh, Dd)
        qg = q.view(Hh, Gh, Dd)
        ref_pos = layer.select(qg)
        got_pos = dispatch.score_and_select(layer, qg)
        for h in range(Hh):
            assert set(got_pos[h].tolist()) == set(ref_pos[h].tolist()), (step, h)
        k_new = torch.randn(Hh, 1, Dd, generator=gen).to(DEV, torch.bfloat16)
        v_new = torch.randn(Hh, Dd, generator=gen).to(DEV, torch.bfloat16)
        out = dispatch.sparse_decode(layer, q, k_new[:, 0], rope(k_new, p)[:, 0], v_new)
        # the step buffer holds, slot by slot, exactly the reference's post-RoPE keys and values of its positions
        st = layer._kstate
        rk, rv = layer.selected_kv(st.resident.slot_pos)
        assert torch.equal(st.k_buf, rk) and torch.equal(st.v_buf, rv), step
        sk, sv = layer.selected_kv(ref_pos)
        gk, gv = layer.gen.view()
        ref = attend(qg, torch.cat([layer.out_k, layer.local_k, sk, gk], 1),
                     torch.cat([layer.out_v, layer.local_v, sv, gv], 1), layer.ctx.scaling).view(-1, Dd)
        assert float((out.float() - ref.float()).abs().max()) <= 0.0625, step  # bf16 rounding of the attention

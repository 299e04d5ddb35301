"""One ShadowKV decode step against an independent, loop-based restatement of docs/algorithms.md."""

import math

import pytest
import torch

from shadowkv_lab import OffloadConfig
from shadowkv_lab.cache.layer import LayerContext, SparseLayer, build_layer


def simple_rope(x, positions, theta=10000.0):
    """Standard half-rotation RoPE. x: (H, k, d); positions: (H, k)."""
    d = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = positions.double().unsqueeze(-1) * inv
    emb = torch.cat([ang, ang], -1)
    cos, sin = emb.cos().to(x.dtype), emb.sin().to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def make_ctx(n_q):
    return LayerContext(rope=simple_rope, scaling=1 / math.sqrt(16), n_q_heads=n_q, compute_device=torch.device("cpu"),
                        offload_device=torch.device("cpu"), pin=False)


def reference_step(cfg, k_pre, v, q, k_new_post, v_new, n_q):
    """Straight from the spec, with explicit loops. Returns (output (Hq, d), selected positions per head)."""
    H, L, d = k_pre.shape
    G = n_q // H
    c, W = cfg.chunk_size, cfg.local_budget
    pos_all = torch.arange(L).unsqueeze(0).expand(H, L)
    k_post = simple_rope(k_pre, pos_all)
    n_chunks = L // c - W // c
    prefix = n_chunks * c
    n_out = min(cfg.outlier_chunks, n_chunks)
    # low-rank keys
    if cfg.rank > 0:
        flat = k_pre.transpose(0, 1).reshape(L, H * d).double()
        U, S, Vh = torch.linalg.svd(flat, full_matrices=False)
        r = cfg.rank
        recon = (U[:, :r] @ torch.diag(S[:r]) @ Vh[:r]).reshape(L, H, d).transpose(0, 1).float()
    else:
        recon = k_pre
    budget = cfg.budget_tokens(L)
    outs, selected = [], []
    for h in range(H):
        lms = [k_post[h, i * c:(i + 1) * c].mean(0) for i in range(n_chunks)]
        if c > 1:
            scores = []
            for i in range(n_chunks):
                cs = [torch.nn.functional.cosine_similarity(k_post[h, i * c + j], lms[i], dim=0) for j in range(c)]
                scores.append(min(cs))
            order = sorted(range(n_chunks), key=lambda i: scores[i])
            outliers = set(order[:n_out])
        else:
            outliers = set(range(n_out))
        cands = [i for i in range(n_chunks) if i not in outliers]
        n_sel = min(budget // c, len(cands))
        best = torch.zeros(len(cands))
        for g in range(G):
            qj = q[h * G + g]
            logits = torch.stack([qj @ lms[i] for i in cands]) / math.sqrt(d)
            best = torch.maximum(best, torch.softmax(logits, 0))
        chosen = sorted(cands[i] for i in torch.topk(best, n_sel).indices.tolist())
        sel_pos = [i * c + j for i in chosen for j in range(c)]
        out_pos = [i * c + j for i in sorted(outliers) for j in range(c)]
        sel = torch.tensor(sel_pos, dtype=torch.long)
        sel_k = simple_rope(recon[h, sel].unsqueeze(0), sel.unsqueeze(0))[0]
        K = torch.cat([k_post[h, out_pos], k_post[h, prefix:], sel_k, k_new_post[h:h + 1]])
        V = torch.cat([v[h, out_pos], v[h, prefix:], v[h, sel], v_new[h:h + 1]])
        for g in range(G):
            p = torch.softmax(K @ q[h * G + g] / math.sqrt(d), 0)
            outs.append(p @ V)
        selected.append(set(sel_pos))
    return torch.stack(outs), selected


@pytest.mark.parametrize("rank,chunk,outliers,budget", [(-1, 4, 3, 24), (12, 4, 3, 24), (-1, 1, 5, 20), (20, 8, 2, 0.2)])
def test_decode_step_matches_spec(rank, chunk, outliers, budget):
    torch.manual_seed(0)
    H, n_q, L, d = 2, 6, 157, 16
    k_pre = torch.randn(H, L, d) * 2
    v = torch.randn(H, L, d)
    cfg = OffloadConfig(name="t", rank=rank, chunk_size=chunk, local_budget=2 * chunk * 2, outlier_chunks=outliers,
                        sparse_budget=budget, score_precision="fp32")
    k_post = simple_rope(k_pre, torch.arange(L).unsqueeze(0).expand(H, L))
    layer = build_layer(cfg, k_pre, k_post, v, make_ctx(n_q))
    assert isinstance(layer, SparseLayer)
    q = torch.randn(n_q, d) * 2
    k_new = torch.randn(H, d)
    k_new_post = simple_rope(k_new.unsqueeze(1), torch.full((H, 1), L))[:, 0]
    v_new = torch.randn(H, d)
    out = layer.decode(q, k_new, k_new_post, v_new)
    want, sel = reference_step(cfg, k_pre, v, q, k_new_post, v_new, n_q)
    for h in range(H):
        assert set(layer.last_selection[h].tolist()) == sel[h]
    assert torch.allclose(out, want, atol=1e-4), (out - want).abs().max()


def test_budget_fraction_rounds_to_chunks():
    cfg = OffloadConfig(name="t", chunk_size=8, sparse_budget=0.015625)
    assert cfg.budget_tokens(20000) == 312
    assert OffloadConfig(name="t", chunk_size=8, sparse_budget=2050).budget_tokens(10**6) == 2048


@pytest.mark.parametrize("field,value,needle", [
    ("rank", 0, "rank"), ("chunk_size", 0, "chunk_size"), ("local_budget", 12, "multiple of chunk_size"),
    ("sparse_budget", 1.5, "sparse_budget"), ("sparse_budget", 0, "sparse_budget"), ("scoring", "dot", "scoring"),
    ("selection", "random", "selection"), ("kind", "sparse", "kind"), ("outlier_chunks", -1, "outlier_chunks"),
    ("landmark_group", 48, "power of two"), ("landmark_format", "int3", "landmark_format"),
])
def test_config_validation_names_field(field, value, needle):
    with pytest.raises(ValueError, match=needle):
        OffloadConfig(name="bad", **{field: value})


def test_config_hash_ignores_name_and_roundtrips():
    a = OffloadConfig(name="a", rank=32)
    b = a.replace(name="b")
    assert a.config_hash() == b.config_hash()
    assert a.config_hash() != a.replace(rank=16).config_hash()
    assert OffloadConfig.from_dict(a.to_dict()) == a
    with pytest.raises(ValueError, match="unknown OffloadConfig fields"):
        OffloadConfig.from_dict({"name": "x", "ranks": 3})


def test_key_svd_recomputes_a_failed_decomposition_in_fp64_and_refuses_non_finite_keys(monkeypatch):
    from shadowkv_lab.cache import layer

    x = torch.randn(64, 16, generator=torch.Generator().manual_seed(0))
    real = torch.linalg.svd

    def fails_in_fp32(a, *args, **kw):
        if a.dtype == torch.float32:
            raise torch.linalg.LinAlgError("linalg.svd: The algorithm failed to converge")
        return real(a, *args, **kw)

    monkeypatch.setattr(torch.linalg, "svd", fails_in_fp32)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        U, S, Vh = layer.key_svd(x)
    assert U.dtype == S.dtype == Vh.dtype == torch.float32 and U.shape == (64, 16)
    torch.testing.assert_close(U @ torch.diag(S) @ Vh, x, atol=1e-5, rtol=1e-5)
    x[3, 4] = float("nan")
    with pytest.raises(ValueError, match="1 non-finite"):
        layer.key_svd(x)

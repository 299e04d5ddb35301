"""Triton kernels vs their torch references on fresh random inputs (relative error, NaN check).

CPU (CI): run under the Triton interpreter, set here before triton is imported. On a GPU machine run with
TRITON_INTERPRET=0 to test the compiled kernels on CUDA (pinned host sources included)."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

triton = pytest.importorskip("triton")

from shadowkv_lab.kernels.attention import decode_attention, decode_attention_ref  # noqa: E402
from shadowkv_lab.kernels.common import hadamard, rope_table_from_freqs, torch_rope  # noqa: E402
from shadowkv_lab.kernels.fetch import (  # noqa: E402
    ResidentSet, gather_rows, gather_rows_ref, higgs_rows, higgs_rows_ref, lowrank_rows, lowrank_rows_ref, union_rows,
)
from shadowkv_lab.kernels.scoring import (  # noqa: E402
    FMT_FP8, FMT_HIGGS, FMT_NATIVE, Landmarks, landmark_scores, landmark_scores_ref, select_topk,
)

GPU = os.environ["TRITON_INTERPRET"] == "0" and torch.cuda.is_available()
DEV = "cuda" if GPU else "cpu"
PIN = GPU  # on the GPU, offloaded sources live in pinned host memory and are read zero-copy


def host(t):
    t = t.cpu()
    return t.pin_memory() if PIN else t


def rel(a, b):
    assert not torch.isnan(a).any(), "NaN in kernel output"
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30))


def rand_grid(n, p, gen):
    return torch.randn(n, p, generator=gen).to(DEV)


def table(n_pos, d, dtype=torch.bfloat16):
    inv = 1.0 / (500000.0 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    return rope_table_from_freqs(inv.to(DEV), n_pos, dtype)


@pytest.mark.parametrize("fmt", ["native", "fp8", "higgs4", "higgs2", "higgs8"])
@pytest.mark.parametrize("rule", ["softmax_max", "mean_dot"])
@pytest.mark.parametrize("G,D", [(4, 128), (7, 64)])
def test_landmark_scores(fmt, rule, G, D):
    gen = torch.Generator().manual_seed(hash((fmt, rule, G)) % 1000)
    BH, M = 3, 300
    q = (torch.randn(BH, G, D, generator=gen) * 2).to(DEV, torch.bfloat16)
    x = torch.randn(BH, M, D, generator=gen)
    if fmt == "native":
        lm = Landmarks(FMT_NATIVE, x.to(DEV, torch.bfloat16))
    elif fmt == "fp8":
        lm = Landmarks(FMT_FP8, x.clamp(-448, 448).to(torch.float8_e4m3fn).view(torch.uint8).to(DEV))
    else:
        p = int(fmt[5:])
        codes = torch.randint(0, 256, (BH, M, D // p), generator=gen, dtype=torch.uint8).to(DEV)
        signs = (torch.randint(0, 2, (D,), generator=gen) * 2 - 1).float().to(DEV) if p == 2 else None
        lm = Landmarks(FMT_HIGGS, codes, torch.rand(BH, M, generator=gen).to(DEV) * 20, rand_grid(256, p, gen), p, signs)
    got = landmark_scores(lm, q, D ** -0.5, rule)
    ref = landmark_scores_ref(lm, q, D ** -0.5, rule)
    assert got.shape == (BH, M)
    assert rel(got, ref) < 2e-2
    if rule == "softmax_max":  # probabilities: every query head's sum over candidates is 1, the max is <= 1
        assert float(got.max()) <= 1.0 + 1e-4
    k = 40
    ours = select_topk(got, k, None, 1)
    theirs = torch.topk(ref, k, -1).indices
    overlap = sum(len(set(ours[r].tolist()) & set(theirs[r].tolist())) for r in range(BH)) / (BH * k)
    assert overlap > 0.85


@pytest.mark.parametrize("fmt", ["native", "higgs2"])
def test_a_bf16_query_is_read_unpadded_with_the_padded_querys_scores(fmt):
    """A bf16 query goes to the kernel as it is (rows past G masked); any other dtype is padded into a bf16 buffer
    first. The same values must score the same, bit for bit, for G below and at the 16-row tile."""
    gen = torch.Generator().manual_seed(11)
    for G in (6, 16):
        BH, M, D = 4, 200, 64
        q = (torch.randn(BH, G, D, generator=gen) * 2).to(DEV, torch.bfloat16)
        x = torch.randn(BH, M, D, generator=gen)
        if fmt == "native":
            lm = Landmarks(FMT_NATIVE, x.to(DEV, torch.bfloat16))
        else:
            codes = torch.randint(0, 256, (BH, M, D // 2), generator=gen, dtype=torch.uint8).to(DEV)
            signs = (torch.randint(0, 2, (D,), generator=gen) * 2 - 1).float().to(DEV)
            lm = Landmarks(FMT_HIGGS, codes, torch.rand(BH, M, generator=gen).to(DEV) * 20, rand_grid(256, 2, gen), 2, signs)
        for bf16_probs in (False, True):
            direct = landmark_scores(lm, q, D ** -0.5, "softmax_max", bf16_probs)
            padded = landmark_scores(lm, q.float(), D ** -0.5, "softmax_max", bf16_probs)
            assert torch.equal(direct, padded), (G, bf16_probs)


def test_landmark_scores_bf16_probs_and_chunks():
    gen = torch.Generator().manual_seed(1)
    BH, G, M, D, c = 2, 4, 200, 64, 8
    q = torch.randn(BH, G, D, generator=gen).to(DEV, torch.bfloat16)
    lm = Landmarks(FMT_NATIVE, torch.randn(BH, M, D, generator=gen).to(DEV, torch.bfloat16))
    got = landmark_scores(lm, q, D ** -0.5, "softmax_max", bf16_probs=True)
    ref = landmark_scores_ref(lm, q, D ** -0.5, "softmax_max", bf16_probs=True)
    assert rel(got, ref) < 1e-2
    cand = torch.sort(torch.randperm(M + 50, generator=gen)[:M]).values.expand(BH, M).to(DEV)
    pos = select_topk(got, 10, cand, c)
    assert pos.shape == (BH, 10 * c) and bool((pos % c == torch.arange(c, device=DEV).repeat(10)).all())


@pytest.mark.parametrize("fmt", ["native", "higgs4"])
@pytest.mark.parametrize("block_m", [16, 64])
def test_stored_logits_bit_identical(fmt, block_m):
    """Pass 1 reading pass 0's logits back gives the very scores of re-scoring the landmarks (any tile size)."""
    gen = torch.Generator().manual_seed(3)
    BH, G, M, D = 2, 4, 150, 64
    q = torch.randn(BH, G, D, generator=gen).to(DEV, torch.bfloat16)
    if fmt == "native":
        lm = Landmarks(FMT_NATIVE, torch.randn(BH, M, D, generator=gen).to(DEV, torch.bfloat16))
    else:
        codes = torch.randint(0, 256, (BH, M, D // 4), generator=gen, dtype=torch.uint8).to(DEV)
        lm = Landmarks(FMT_HIGGS, codes, torch.rand(BH, M, generator=gen).to(DEV) + 1, rand_grid(256, 4, gen), 4)
    a = landmark_scores(lm, q, D ** -0.5, "softmax_max", True, block_m=block_m, store_logits=True)
    b = landmark_scores(lm, q, D ** -0.5, "softmax_max", True, block_m=block_m, store_logits=False)
    assert torch.equal(a, b)
    assert rel(a, landmark_scores_ref(lm, q, D ** -0.5, "softmax_max", True)) < 1e-2


@pytest.mark.parametrize("kw,msg", [(dict(block_m=48), "block_m must be a power of two >= 16, got 48"),
                                    (dict(block_m=8), "got 8"), (dict(num_warps=3), "num_warps must be one of"),
                                    (dict(lm_dtype=torch.float64), "landmark dtype torch.float64 not supported")])
def test_scoring_knobs_validated(kw, msg):
    lm = Landmarks(FMT_NATIVE, torch.zeros(1, 32, 64, dtype=torch.bfloat16, device=DEV), dtype=kw.pop("lm_dtype", torch.bfloat16))
    with pytest.raises(ValueError, match=msg):
        landmark_scores(lm, torch.zeros(1, 2, 64, dtype=torch.bfloat16, device=DEV), 0.1, **kw)


def test_higgs_landmarks_match_quantizer():
    """The rotated-domain dequantization equals HiggsQuantizer.dequantize on its own storage layout."""
    quant = pytest.importorskip("shadowkv_lab.quant")
    try:
        q = quant.make_quantizer("higgs-4-256", group=128)
    except ValueError as e:
        pytest.skip(f"grid not committed: {e}")
    x = torch.randn(100, 128)
    qt = q.quantize(x)
    lm = Landmarks(FMT_HIGGS, qt.rows["codes"][None].to(DEV), qt.rows["scales"][:, 0][None].to(DEV),
                   quant.load_grid(4, 256, DEV), 4)
    assert rel(lm.dequantize()[0].cpu(), q.dequantize(qt)) < 1e-5


@pytest.mark.parametrize("fmt,rope,layout", [(0, False, "head"), (0, True, "head"), (1, True, "token"), (1, False, "token")])
def test_gather_rows(fmt, rope, layout):
    gen = torch.Generator().manual_seed(fmt * 2 + rope)
    B, H, P, D, K = 2, 3, 500, 64, 37
    x = torch.randn(B, H, P, D, generator=gen)
    if layout == "token":  # (B, P, H*D): the token-major layout of FP8 keys/values (group H*d)
        x = x.transpose(1, 2).contiguous()
        strides = (P * H * D, D, H * D)
    else:
        strides = (H * P * D, P * D, D)
    src = host(x.clamp(-448, 448).to(torch.float8_e4m3fn).view(torch.uint8) if fmt == 1 else x.to(torch.bfloat16))
    idx = torch.randint(0, P, (B * H, K), generator=gen).to(DEV)
    slots = torch.stack([torch.randperm(K, generator=gen) for _ in range(B * H)]).to(DEV)
    n = torch.randint(0, K + 1, (B * H,), generator=gen).to(DEV)
    tab = table(P, D) if rope else None
    out = torch.full((B * H, K, D), float("nan"), dtype=torch.bfloat16, device=DEV)
    ref = out.clone()
    gather_rows(src, strides, H, idx, out, slots, n, fmt, tab)
    gather_rows_ref(src, strides, H, idx, ref, slots, n, fmt, tab)
    written = ~torch.isnan(ref)
    assert torch.equal(written, ~torch.isnan(out))  # exactly the first n rows, at their slots
    assert rel(out[written], ref[written]) < 1e-2
    # without slots, row i goes to slot i: the kernel computes it (nothing materialised), the same bits as slots arange
    plain = torch.full_like(out, float("nan"))
    given = torch.full_like(out, float("nan"))
    gather_rows(src, strides, H, idx, plain, None, n, fmt, tab)
    gather_rows(src, strides, H, idx, given, torch.arange(K, device=DEV).expand(B * H, K), n, fmt, tab)
    assert torch.equal(plain.isnan(), given.isnan()) and torch.equal(plain.nan_to_num(), given.nan_to_num())


def test_gathers_launched_region_major_refuse_more_rows_than_the_grid_holds():
    # rows (batch x heads) are the grid's second dimension, so that the programs in flight read few rows' regions
    src = host(torch.zeros(1, 1, 4, 32, dtype=torch.bfloat16))
    idx = torch.zeros(65536, 1, dtype=torch.long, device=DEV)
    out = torch.empty(65536, 1, 32, dtype=torch.bfloat16, device=DEV)
    with pytest.raises(ValueError, match="65536 rows .* at most 65535"):
        gather_rows(src, (0, 0, 32), 65536, idx, out)


def test_resident_set_hits_and_contents():
    gen = torch.Generator().manual_seed(3)
    BH, P, K, D = 4, 300, 50, 32
    data = torch.randn(BH, P, D, generator=gen).to(torch.bfloat16)
    src = host(data)
    rs = ResidentSet(BH, K, DEV)
    buf = torch.zeros(BH, K, D, dtype=torch.bfloat16, device=DEV)
    sel = torch.stack([torch.randperm(P, generator=gen)[:K] for _ in range(BH)])
    fetched = 0
    for step in range(6):
        if step:  # keep about 70% of each row's selection, replace the rest
            new = []
            for r in range(BH):
                keep = sel[r][torch.randperm(K, generator=gen)[: int(0.7 * K)]]
                rest = torch.tensor([p for p in torch.randperm(P, generator=gen).tolist() if p not in set(sel[r].tolist())][: K - len(keep)])
                new.append(torch.cat([keep, rest]))
            sel = torch.stack(new)
        s, slots, n = rs.update(sel.to(DEV))
        fetched += int(n.sum())
        gather_rows(src, (0, P * D, D), BH, s, buf, slots, n, 0)
        for r in range(BH):
            assert sorted(rs.slot_pos[r].tolist()) == sorted(sel[r].tolist())
            assert torch.equal(buf[r].cpu(), data[r, rs.slot_pos[r].cpu()])
    assert fetched == BH * K + 5 * BH * (K - int(0.7 * K))
    assert abs(rs.hit_rate() - (1 - fetched / (6 * BH * K))) < 1e-9


def test_union_rows():
    gen = torch.Generator().manual_seed(4)
    H, K, B = 3, 20, 2
    pos = torch.randint(0, 30, (B * H, K), generator=gen).to(DEV)
    n = torch.randint(0, K + 1, (B * H,), generator=gen).to(DEV)
    uniq, n_u, inv = union_rows(pos, n, H)
    for b in range(B):
        want = sorted({int(pos[b * H + h, i]) for h in range(H) for i in range(int(n[b * H + h]))})
        assert uniq[b, : int(n_u[b])].tolist() == want
        for h in range(H):
            k = int(n[b * H + h])
            assert torch.equal(uniq[b][inv[b * H + h, :k]], pos[b * H + h, :k])


@pytest.mark.parametrize("C,group,p", [(1024, 1024, 2), (128, 128, 2), (512, 256, 4)])
def test_higgs_rows(C, group, p):
    gen = torch.Generator().manual_seed(C + p)
    B, P, CAP = 2, 200, 40
    codes = host(torch.randint(0, 256, (B, P, C // p), generator=gen, dtype=torch.uint8))
    scales = host(torch.rand(B, P, C // group, generator=gen) * 30)
    grid = rand_grid(256, p, gen)
    pos = torch.randint(0, P, (B, CAP), generator=gen).to(DEV)
    n = torch.tensor([CAP, 17]).to(DEV)
    out = torch.full((B, CAP, C), float("nan"), dtype=torch.bfloat16, device=DEV)
    ref = out.clone()
    higgs_rows(codes, scales, grid, group, pos, n, out)
    higgs_rows_ref(codes, scales, grid, group, pos, n, ref)
    written = ~torch.isnan(ref)
    assert torch.equal(written, ~torch.isnan(out))
    assert rel(out[written], ref[written]) < 1e-2


def test_higgs_rows_match_quantizer():
    quant = pytest.importorskip("shadowkv_lab.quant")
    try:
        q = quant.make_quantizer("higgs-2-256", group=256)
    except ValueError as e:
        pytest.skip(f"grid not committed: {e}")
    x = torch.randn(60, 256)
    qt = q.quantize(x)
    pos = torch.arange(60).view(1, -1).to(DEV)
    out = torch.empty(1, 60, 256, dtype=torch.float32, device=DEV)
    higgs_rows(host(qt.rows["codes"])[None], host(qt.rows["scales"])[None], quant.load_grid(2, 256, DEV), 256, pos,
               torch.tensor([60], device=DEV), out)
    assert rel(out[0].cpu(), q.dequantize(qt)) < 1e-4


def test_lowrank_rows():
    gen = torch.Generator().manual_seed(5)
    B, H, P, R, D, K = 2, 3, 400, 160, 64, 33
    U = torch.randn(B, P, R, generator=gen).to(DEV, torch.bfloat16)
    SV = (torch.randn(B * H, R, D, generator=gen) / R ** 0.5).to(DEV, torch.bfloat16)
    pos = torch.randint(0, P, (B * H, K), generator=gen).to(DEV)
    tab = table(P, D)
    out = torch.empty(B * H, K, D, dtype=torch.bfloat16, device=DEV)
    lowrank_rows(U, SV, pos, out, tab)
    assert rel(out, lowrank_rows_ref(U, SV, pos, tab)) < 1e-2
    # explicit slots (a permutation) put the same rows elsewhere; slots arange(K) is the default, bit for bit
    perm = torch.stack([torch.randperm(K, generator=gen) for _ in range(B * H)]).to(DEV)
    moved = torch.empty_like(out)
    lowrank_rows(U, SV, pos, moved, tab, slots=perm)
    assert torch.equal(moved.gather(1, perm.unsqueeze(-1).expand(-1, -1, D)), out)


def test_torch_rope_matches_hf_style():
    d, P = 64, 50
    tab = table(P, d)
    x = torch.randn(2, P, d).to(DEV, torch.bfloat16)
    pos = torch.arange(P, device=DEV).expand(2, P)
    inv = 1.0 / (500000.0 ** (torch.arange(0, d, 2, dtype=torch.float32) / d))
    f = pos[0].float().cpu()[:, None] * inv[None]
    emb = torch.cat([f, f], -1)
    cos, sin = emb.cos().to(torch.bfloat16).to(DEV), emb.sin().to(torch.bfloat16).to(DEV)
    ref = x * cos + torch.cat([-x[..., d // 2:], x[..., : d // 2]], -1) * sin
    assert torch.equal(torch_rope(x, pos, tab), ref)


@pytest.mark.parametrize("G,D,lens", [(4, 128, [48, 0, 300, 5]), (7, 64, [1]), (4, 64, [1000])])
def test_decode_attention(G, D, lens):
    gen = torch.Generator().manual_seed(sum(lens))
    BH = 3
    q = torch.randn(BH, G, D, generator=gen).to(DEV, torch.bfloat16)
    segs = []
    for n in lens:
        big = torch.randn(BH, n + 7, D, generator=gen).to(DEV, torch.bfloat16)  # strided views, as the cache has
        segs.append((big[:, :n], (torch.randn(BH, n, D, generator=gen)).to(DEV, torch.bfloat16)))
    got = decode_attention(q, segs, D ** -0.5)
    assert rel(got, decode_attention_ref(q, segs, D ** -0.5)) < 1e-2


def test_hadamard_is_fwht():
    from shadowkv_lab.quant.hadamard import fwht

    x = torch.randn(5, 256)
    assert torch.allclose(x @ hadamard(256, "cpu"), fwht(x), atol=1e-4)

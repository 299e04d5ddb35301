"""Lookup-table scoring of HIGGS landmarks (kernels/scoring_lut.py): the Triton kernel against its torch reference,
the table's logits against dequantize-then-dot, the top-k against the reference-exact scoring, ragged rows.

CPU (CI): the Triton interpreter, set here before triton is imported. On a GPU machine run with TRITON_INTERPRET=0."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

pytest.importorskip("triton")

from shadowkv_lab.kernels.scoring import FMT_NATIVE, Landmarks, landmark_scores_ref  # noqa: E402
from shadowkv_lab.kernels.scoring_lut import (  # noqa: E402
    higgs_lut, landmark_scores_lut, landmark_scores_lut_ref, lut_logits_ref,
)
from shadowkv_lab.quant import HiggsQuantizer, load_grid  # noqa: E402
from shadowkv_lab.selection import topk_indices  # noqa: E402

GPU = os.environ["TRITON_INTERPRET"] == "0" and torch.cuda.is_available()
DEV = "cuda" if GPU else "cpu"
BH, G = 4, 6


def _massive(D, size):
    """A few massive low-frequency channels (Qwen2.5-like at size 300: |k| ~ 300, |q| ~ 40)."""
    m = torch.zeros(D)
    m[[D // 2 - 1, D - 1, D // 2 - 3]] = torch.tensor([300.0, -250.0, 120.0]) * (size / 300)
    return m


def _higgs(D, M, seed, massive=0.0, signs=False, n_rows=BH):
    """Real HIGGS codes (EDEN4-256, group D) of random bf16 keys (low rank + noise + massive channels) and bf16
    queries. -> codes (R, M, D // 4), scales (R, M), fp32 dequantized landmarks (R, M, D), q (R, G, D), quantizer."""
    gen = torch.Generator().manual_seed(seed)
    mv = _massive(D, massive)
    k = (mv + torch.randn(n_rows, M, 8, generator=gen) @ torch.randn(8, D, generator=gen)
         + torch.randn(n_rows, M, D, generator=gen)).to(torch.bfloat16)
    qz = HiggsQuantizer(4, 256, D, signs=signs)
    qt = qz.quantize(k.float().reshape(-1, D))
    deq = qz.dequantize(qt).view(n_rows, M, D)
    q = (mv / 8 + 2 * torch.randn(n_rows, G, D, generator=gen)).to(torch.bfloat16)
    codes = qt.rows["codes"].view(n_rows, M, D // 4)
    scales = qt.rows["scales"].view(n_rows, M)
    return codes.to(DEV), scales.to(DEV), deq.to(DEV), q.to(DEV), qz


def _lut(q, qz, rule="softmax_max"):
    signs = qz._sign_vec(q.device) if qz.signs else None
    return higgs_lut(q, load_grid(4, 256, q.device), rule, signs=signs)


@pytest.mark.parametrize("rule", ["softmax_max", "mean_dot"])
@pytest.mark.parametrize("D,signs", [(64, False), (128, False), (128, True)])
def test_kernel_matches_lut_reference(rule, D, signs):
    """The Triton scores equal the torch reference of the same math to fp32 rounding (both probability precisions,
    ragged lengths too); a table in another memory layout (copied by the scorer) gives the very same scores."""
    codes, scales, _, q, qz = _higgs(D, 300, seed=D + signs, signs=signs)
    lut = _lut(q, qz, rule)
    assert lut.shape == (BH, 1 if rule == "mean_dot" else G, D // 4, 256)
    for bf16 in ([False, True] if rule == "softmax_max" else [False]):
        for lengths in (None, torch.tensor([300, 17, 1, 200], device=DEV)):
            got = landmark_scores_lut(codes, scales, lut, D ** -0.5, rule, bf16, lengths=lengths)
            ref = landmark_scores_lut_ref(codes, scales, lut, D ** -0.5, rule, bf16, lengths=lengths)
            assert torch.equal(torch.isinf(got), torch.isinf(ref)) and not torch.isnan(got).any()
            fin = torch.isfinite(ref)
            atol = 1e-6 * float(ref[fin].abs().max())
            torch.testing.assert_close(got[fin], ref[fin], rtol=1e-5, atol=atol + (1 / 128 if bf16 else 0))
            if bf16:  # one bf16 ulp where the fp32 probabilities straddle a rounding boundary, otherwise equal
                assert float((got[fin] != ref[fin]).float().mean()) < 0.01
    plain = lut.contiguous()  # (BH, G, J, n) row-major: not the scorer's layout
    assert torch.equal(landmark_scores_lut(codes, scales, plain, D ** -0.5, rule),
                       landmark_scores_lut(codes, scales, lut, D ** -0.5, rule))


@pytest.mark.parametrize("D,signs,massive", [(64, False, 0.0), (128, False, 300.0), (128, True, 30.0)])
def test_lut_logits_equal_dequantize_then_dot(D, signs, massive):
    """q . l from the tables (torch reference, and the kernel's mean_dot scores, which are unscaled logits) equals
    q . HiggsQuantizer.dequantize(...) in fp32, up to fp32 rounding: errors within a few ulps of |q| |l|."""
    codes, scales, deq, q, qz = _higgs(D, 300, seed=7, massive=massive, signs=signs)
    exact = torch.matmul(q.double(), deq.double().transpose(1, 2))  # (BH, G, M)
    bound = torch.finfo(torch.float32).eps * q.float().norm(dim=-1)[..., None] * deq.norm(dim=-1)[:, None, :]
    err = (lut_logits_ref(codes, scales, _lut(q, qz)).double() - exact).abs()
    assert float((err / bound).max()) < 16, float((err / bound).max())
    fp32 = torch.matmul(q.float(), deq.transpose(1, 2)).double()  # the dequantize-then-dot path itself errs as much
    assert float(((fp32 - exact).abs() / bound).max()) < 16
    qm = q.float().mean(1, keepdim=True)
    exact_m = torch.matmul(qm.double(), deq.double().transpose(1, 2))[:, 0]
    bound_m = torch.finfo(torch.float32).eps * qm.norm(dim=-1) * deq.norm(dim=-1)
    got = landmark_scores_lut(codes, scales, _lut(q, qz, "mean_dot"), D ** -0.5, "mean_dot")
    assert float(((got.double() - exact_m).abs() / bound_m).max()) < 16


def _recall(a, b, k):
    ta, tb = topk_indices(a, k), topk_indices(b, k)
    return sum(len(set(ta[r].tolist()) & set(tb[r].tolist())) for r in range(a.shape[0])) / (a.shape[0] * k)


@pytest.mark.parametrize("massive,floor", [(30.0, 0.99), (300.0, 0.85)])
def test_selection_recall_against_reference_exact(massive, floor):
    """Top-32 of 1,024 landmarks (3.125%), 4 seeds x 4 rows, real HIGGS codes of keys with three massive channels.
    The reference (landmark_scores_ref on the dequantized landmarks rounded to bf16, bf16 probabilities: what
    SparseLayer.select and kernels/scoring.py compute) vs the LUT scores (fp32 throughout). Measured mean recall: 0.992
    at massive channels of 30 (10x the other channels' spread), 0.889 at 300 (Qwen2.5's layer-0 size). The whole gap is the
    reference's rounding of each dequantized landmark to bf16 (1 ulp = 2.0 on a channel of 300, times a query channel
    of ~40): the LUT's top-k is exactly that of dequantize-then-dot in fp32, whose recall against the reference is
    the same number."""
    k, M = 32, 1024
    rec, rec_fp32, same = [], [], []
    for seed in range(4):
        codes, scales, deq, q, qz = _higgs(128, M, seed=100 + seed, massive=massive)
        ref = landmark_scores_ref(Landmarks(FMT_NATIVE, deq.to(torch.bfloat16)), q, 128 ** -0.5, bf16_probs=True)
        fp32 = landmark_scores_ref(Landmarks(FMT_NATIVE, deq), q, 128 ** -0.5)
        got = landmark_scores_lut(codes, scales, _lut(q, qz), 128 ** -0.5)
        rec.append(_recall(got, ref, k))
        rec_fp32.append(_recall(fp32, ref, k))
        same.append(_recall(got, fp32, k))
    mean = sum(rec) / len(rec)
    assert mean >= floor, mean
    assert min(same) == 1.0, same
    assert abs(mean - sum(rec_fp32) / len(rec_fp32)) <= 1 / (BH * k), (rec, rec_fp32)


def _garbage_stack(rows, M, seed):
    """Rows (codes (H, n, J), scales (H, n)) stacked and padded to M with random codes and huge scales."""
    gen = torch.Generator().manual_seed(seed)
    cs, ss, lens = [], [], []
    for c, s in rows:
        H, n, J = c.shape
        cs.append(torch.cat([c, torch.randint(0, 256, (H, M - n, J), generator=gen, dtype=torch.uint8).to(DEV)], 1))
        ss.append(torch.cat([s, (torch.rand(H, M - n, generator=gen) * 1e30).to(DEV)], 1))
        lens += [n] * H
    return torch.cat(cs), torch.cat(ss), torch.tensor(lens, device=DEV)


@pytest.mark.parametrize("rule", ["softmax_max", "mean_dot"])
def test_ragged_rows_bit_identical_to_alone(rule):
    """Each row alone (its own M, lengths=None) vs stacked in another order with garbage padding and a 16-landmark
    tile (many blocks, blocks wholly past short rows, two tiles of the statistics reduction): torch.equal on every
    valid score, -inf on padding; the table of a row is the same alone and in the batch; stored and re-gathered
    logits alike."""
    H, D = 2, 128
    lens = [300, 37, 129, 1]
    data = [_higgs(D, n, seed=30 + i, massive=30.0, n_rows=H) for i, n in enumerate(lens)]
    rows = [(c, s) for c, s, *_ in data]
    luts = [_lut(q, qz, rule) for *_, q, qz in data]
    for r, (*_, q, qz) in enumerate(data):
        assert torch.equal(luts[r], _lut(torch.cat([d[3] for d in data]), qz, rule)[r * H:(r + 1) * H])
    for store in (True, False):
        kw = dict(rule=rule, bf16_probs=True, block_m=16, store_logits=store) if rule == "softmax_max" else \
            dict(rule=rule, block_m=16)
        alone = [landmark_scores_lut(c, s, luts[r], D ** -0.5, **kw) for r, (c, s) in enumerate(rows)]
        for order, M in [([0, 1, 2, 3], 300), ([2, 3, 0, 1], 330)]:
            codes, scales, lengths = _garbage_stack([rows[r] for r in order], M, seed=M)
            lut = torch.cat([luts[r] for r in order])
            got = landmark_scores_lut(codes, scales, lut, D ** -0.5, lengths=lengths, **kw)
            assert not torch.isnan(got).any()
            if rule == "softmax_max":  # bf16 probabilities: every score a bf16 value (topk_indices(bf16_scores=True))
                assert torch.equal(got, got.to(torch.bfloat16).float())
            for i, r in enumerate(order):
                g, n = got[i * H:(i + 1) * H], lens[r]
                assert torch.equal(g[:, :n], alone[r]), (r, int((g[:, :n] != alone[r]).sum()))
                assert bool((g[:, n:] == float("-inf")).all()), r
            ref = landmark_scores_lut_ref(codes, scales, lut, D ** -0.5, lengths=lengths, **{
                k: v for k, v in kw.items() if k in ("rule", "bf16_probs")})
            assert torch.equal(torch.isinf(got), torch.isinf(ref))


def test_one_landmark_row_and_stored_logits():
    """A row of one valid landmark scores probability 1; stored and re-gathered logits give identical scores."""
    codes, scales, _, q, qz = _higgs(128, 200, seed=3)
    lut = _lut(q, qz)
    lengths = torch.tensor([1, 200, 50, 7], device=DEV)
    a = landmark_scores_lut(codes, scales, lut, 0.1, lengths=lengths, block_m=32, store_logits=True)
    b = landmark_scores_lut(codes, scales, lut, 0.1, lengths=lengths, block_m=32, store_logits=False)
    assert torch.equal(a, b)
    assert float(a[0, 0]) == 1.0 and float(a[1:].max()) <= 1.0 + 1e-6


@pytest.mark.parametrize("kw,msg", [(dict(rule="dot"), "rule 'dot' not supported"),
                                    (dict(rule="mean_dot"), "mean_dot needs the group-mean query's table"),
                                    (dict(block_m=48), "block_m must be a power of two >= 16"),
                                    (dict(num_warps=3), "num_warps must be one of"),
                                    (dict(lengths=torch.ones(3, dtype=torch.long)), r"shape \(4,\)")])
def test_arguments_validated(kw, msg):
    codes = torch.zeros(BH, 32, 32, dtype=torch.uint8, device=DEV)
    lut = torch.zeros(BH, G, 32, 256, device=DEV)
    if "lengths" in kw:
        kw["lengths"] = kw["lengths"].to(DEV)
    with pytest.raises(ValueError, match=msg):
        landmark_scores_lut(codes, torch.ones(BH, 32, device=DEV), lut, 0.1, **kw)


@pytest.mark.skipif(not GPU, reason="CUDA graphs: a GPU and TRITON_INTERPRET=0")
def test_cuda_graph_replay_reads_queries_and_lengths_on_device():
    """Table and scores captured once, replayed after the queries and lengths change in place: a fresh call's scores."""
    codes, scales, _, q, qz = _higgs(128, 256, seed=9)
    grid = load_grid(4, 256, DEV)
    lengths = torch.full((BH,), 256, device=DEV)
    fn = lambda: landmark_scores_lut(codes, scales, higgs_lut(q, grid), 0.1, lengths=lengths)  # noqa: E731
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # compile outside the capture
        fn()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    for new in ([200, 5, 256, 1], [1, 256, 77, 128]):
        lengths.copy_(torch.tensor(new, device=DEV))
        q.copy_(torch.randn_like(q))
        graph.replay()
        assert torch.equal(out, fn())

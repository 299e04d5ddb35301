"""Ragged, batch-invariant landmark scoring: rows of different landmark counts stacked in one batch, padded to the
longest, score bit for bit as each row alone; padding scores -inf and never enters the softmax.

CPU (CI): the Triton interpreter, set here before triton is imported. On a GPU machine run with TRITON_INTERPRET=0
(the CUDA-graph test runs there only)."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

pytest.importorskip("triton")

from shadowkv_lab.kernels.scoring import (  # noqa: E402
    FMT_FP8, FMT_HIGGS, FMT_NATIVE, Landmarks, landmark_scores, landmark_scores_ref, select_topk,
)

GPU = os.environ["TRITON_INTERPRET"] == "0" and torch.cuda.is_available()
DEV = "cuda" if GPU else "cpu"
H, G = 2, 6
FMTS = ["native", "fp8", "higgs2"]
RULES = ["softmax_max", "mean_dot"]


def _rows(fmt, lens, D, seed):
    """One (H, n, ...) landmark set per row (its own data, no padding) and the format's shared grid / signs."""
    gen = torch.Generator().manual_seed(seed)
    grid = signs = None
    if fmt == "higgs2":
        grid = torch.randn(256, 2, generator=gen)
        signs = (torch.randint(0, 2, (D,), generator=gen) * 2 - 1).float()
    rows = []
    for n in lens:
        if fmt == "native":
            rows.append(((torch.randn(H, n, D, generator=gen) * 2).to(torch.bfloat16), None))
        elif fmt == "fp8":
            x = (torch.randn(H, n, D, generator=gen) * 2).to(torch.float8_e4m3fn).view(torch.uint8)
            rows.append((x, None))
        else:
            codes = torch.randint(0, 256, (H, n, D // 2), generator=gen, dtype=torch.uint8)
            rows.append((codes, torch.rand(H, n, generator=gen) * 20))
    return rows, grid, signs


def _landmarks(fmt, data, scales, grid, signs):
    if fmt == "native":
        return Landmarks(FMT_NATIVE, data.to(DEV))
    if fmt == "fp8":
        return Landmarks(FMT_FP8, data.to(DEV))
    return Landmarks(FMT_HIGGS, data.to(DEV), scales.to(DEV), grid.to(DEV), 2, signs.to(DEV))


def _stack(fmt, rows, M, grid, signs, seed):
    """Rows stacked (len(rows) * H, M, ...) and padded with garbage: huge values and NaN (native), random bytes
    (fp8: NaN patterns included; HIGGS: random codes) with huge scales; lengths (BH,) on the device."""
    gen = torch.Generator().manual_seed(seed)
    datas, scs, lens = [], [], []
    for data, sc in rows:
        n = data.shape[1]
        pad = M - n
        if fmt == "native":
            junk = (torch.randn(H, pad, data.shape[2], generator=gen) * 1e30).to(torch.bfloat16)
            junk[:, ::3, ::5] = float("nan")
        else:
            junk = torch.randint(0, 256, (H, pad, data.shape[2]), generator=gen, dtype=torch.uint8)
        datas.append(torch.cat([data, junk], 1))
        if sc is not None:
            scs.append(torch.cat([sc, torch.rand(H, pad, generator=gen) * 1e30], 1))
        lens += [n] * H
    lm = _landmarks(fmt, torch.cat(datas), torch.cat(scs) if scs else None, grid, signs)
    return lm, torch.tensor(lens, device=DEV)


def _queries(n_rows, D, seed):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(H, G, D, generator=gen) * 2).to(DEV, torch.bfloat16) for _ in range(n_rows)]


def _check_rows(got, lens, alone, order):
    """got (len(order) * H, M): row order[i]'s block equals alone[order[i]] on its valid landmarks, -inf after."""
    for i, r in enumerate(order):
        g, n = got[i * H:(i + 1) * H], lens[r]
        assert torch.equal(g[:, :n], alone[r]), (r, int((g[:, :n] != alone[r]).sum()))
        assert bool((g[:, n:] == float("-inf")).all()), r


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("fmt", FMTS)
def test_stacked_rows_bit_identical_to_alone(fmt, rule):
    """Each row alone (BH = H, its own M, lengths=None) vs stacked, padded with garbage, in another order and with
    extra batch mates: torch.equal on every valid score, -inf on padding. The counts put blocks wholly past a row's
    length (1, 37) and a block with one valid landmark (129) next to the longest row (300)."""
    D = 64
    lens = [300, 37, 129, 1]
    mates = [260, 5]
    rows, grid, signs = _rows(fmt, lens + mates, D, seed=FMTS.index(fmt))
    qs = _queries(len(rows), D, seed=11)
    scaling = D ** -0.5
    alone = [landmark_scores(_landmarks(fmt, d, s, grid, signs), qs[r], scaling, rule)
             for r, (d, s) in enumerate(rows)]
    all_lens = lens + mates
    for r, a in enumerate(alone):
        assert a.shape == (H, all_lens[r]) and not torch.isnan(a).any()
    for order, M in [([0, 1, 2, 3], 300), ([2, 4, 0, 3, 5, 1], 330)]:
        lm, lengths = _stack(fmt, [rows[r] for r in order], M, grid, signs, seed=M)
        got = landmark_scores(lm, torch.cat([qs[r] for r in order]), scaling, rule, lengths=lengths)
        assert got.shape == (len(order) * H, M)
        _check_rows(got, all_lens, alone, order)


@pytest.mark.parametrize("fmt", ["native", "higgs2"])
def test_small_block_many_tiles_bit_identical(fmt):
    """A 16-landmark block: 19 blocks in the stack (two tiles of the block-statistics reduction), 3 for the short
    row alone; bf16 probabilities; stored and re-scored logits alike."""
    D = 128
    lens = [300, 40, 17]
    rows, grid, signs = _rows(fmt, lens, D, seed=5)
    qs = _queries(len(rows), D, seed=6)
    for store in (False, True):
        kw = dict(bf16_probs=True, block_m=16, store_logits=store)
        alone = [landmark_scores(_landmarks(fmt, d, s, grid, signs), qs[r], D ** -0.5, **kw)
                 for r, (d, s) in enumerate(rows)]
        for order, M in [([0, 1, 2], 300), ([2, 1], 64)]:
            lm, lengths = _stack(fmt, [rows[r] for r in order], M, grid, signs, seed=M)
            got = landmark_scores(lm, torch.cat([qs[r] for r in order]), D ** -0.5, lengths=lengths, **kw)
            _check_rows(got, lens, alone, order)


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("fmt", FMTS)
def test_ragged_matches_reference(fmt, rule):
    """Stacked and padded vs the torch reference with the same lengths (a masked fp32 softmax): the tolerance of
    tests/test_kernels.py, -inf at the same places; the reference's padded rows agree with its rows alone."""
    D = 64
    lens = [300, 37, 129, 1]
    rows, grid, signs = _rows(fmt, lens, D, seed=21)
    qs = _queries(len(rows), D, seed=22)
    lm, lengths = _stack(fmt, rows, 300, grid, signs, seed=23)
    q = torch.cat(qs)
    for bf16 in ([False, True] if rule == "softmax_max" else [False]):
        got = landmark_scores(lm, q, D ** -0.5, rule, bf16_probs=bf16, lengths=lengths)
        ref = landmark_scores_ref(lm, q, D ** -0.5, rule, bf16_probs=bf16, lengths=lengths)
        assert torch.equal(torch.isinf(got), torch.isinf(ref))
        valid = torch.isfinite(ref)
        assert int(valid.sum()) == H * sum(lens)
        assert not torch.isnan(got).any()
        err = float((got[valid] - ref[valid]).norm() / ref[valid].norm())
        assert err < 2e-2, err
        if bf16:  # every score a bf16 value, padding included: topk_indices(bf16_scores=True) relies on it
            assert torch.equal(got, got.to(torch.bfloat16).float())
        if rule == "softmax_max":
            assert float(got[valid].max()) <= 1.0 + 1e-4
            assert torch.equal(got[lengths == 1][:, 0], torch.ones(H, device=DEV))  # one landmark: probability 1
        for r, (d, s) in enumerate(rows):
            own = landmark_scores_ref(_landmarks(fmt, d, s, grid, signs), qs[r], D ** -0.5, rule, bf16_probs=bf16)
            torch.testing.assert_close(ref[r * H:(r + 1) * H, :lens[r]], own, rtol=1e-5, atol=1e-6)


def test_select_topk_on_padded_scores():
    """-inf padding sorts last, ties (bf16 probabilities) go to the lowest index: a stacked row picks what it picks
    alone, and a row shorter than the budget gets its valid landmarks first."""
    D = 64
    lens = [200, 30, 90]
    rows, grid, signs = _rows("native", lens, D, seed=31)
    qs = _queries(len(rows), D, seed=32)
    lm, lengths = _stack("native", rows, 200, grid, signs, seed=33)
    got = landmark_scores(lm, torch.cat(qs), D ** -0.5, bf16_probs=True, lengths=lengths)
    k, c = 20, 4
    cand = torch.arange(200, device=DEV).expand(len(lens) * H, 200) * 3
    pos = select_topk(got, k, cand, c)
    for r, (d, _) in enumerate(rows):
        own = landmark_scores(_landmarks("native", d, None, grid, signs), qs[r], D ** -0.5, bf16_probs=True)
        assert torch.equal(pos[r * H:(r + 1) * H], select_topk(own, k, cand[:H, :lens[r]], c))
    many = select_topk(got, 40, None, 1)  # row 1 has 30 landmarks: they come first, then padding by index
    sl = many[H:2 * H]
    assert torch.equal(torch.sort(sl[:, :30]).values, torch.arange(30, device=DEV).expand(H, 30))
    assert torch.equal(sl[:, 30:], torch.arange(30, 40, device=DEV).expand(H, 10))


def test_lengths_none_equals_full_lengths():
    """lengths=None and lengths = M for every row give the same scores."""
    D = 64
    rows, grid, signs = _rows("higgs2", [150, 150], D, seed=41)
    lm = _landmarks("higgs2", torch.cat([r[0] for r in rows]), torch.cat([r[1] for r in rows]), grid, signs)
    q = torch.cat(_queries(2, D, seed=42))
    full = torch.full((2 * H,), 150, device=DEV)
    for rule in RULES:
        assert torch.equal(landmark_scores(lm, q, D ** -0.5, rule),
                           landmark_scores(lm, q, D ** -0.5, rule, lengths=full))


@pytest.mark.parametrize("lengths,msg", [(torch.ones(3, dtype=torch.long), r"shape \(4,\)"),
                                         (torch.ones(4, 1, dtype=torch.long), r"shape \(4,\)"),
                                         (torch.ones(4), "integer tensor")])
def test_lengths_validated(lengths, msg):
    lm = Landmarks(FMT_NATIVE, torch.zeros(4, 32, 64, dtype=torch.bfloat16, device=DEV))
    with pytest.raises(ValueError, match=msg):
        landmark_scores(lm, torch.zeros(4, 2, 64, dtype=torch.bfloat16, device=DEV), 0.1, lengths=lengths.to(DEV))


@pytest.mark.skipif(not GPU, reason="CUDA graphs: a GPU and TRITON_INTERPRET=0")
@pytest.mark.parametrize("fmt", ["native", "higgs2"])
def test_cuda_graph_replay_reads_lengths_on_device(fmt):
    """Captured once, replayed after the lengths change in place: the scores of a fresh call with the new lengths."""
    D = 64
    rows, grid, signs = _rows(fmt, [128, 128, 128], D, seed=51)  # no garbage: any count up to 128 is valid data
    lm, lengths = _stack(fmt, rows, 128, grid, signs, seed=52)
    q = torch.cat(_queries(3, D, seed=53))
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # compile outside the capture
        landmark_scores(lm, q, D ** -0.5, lengths=lengths)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = landmark_scores(lm, q, D ** -0.5, lengths=lengths)
    for new in ([120, 120, 5, 5, 64, 64], [1, 1, 128, 128, 77, 77]):
        lengths.copy_(torch.tensor(new, device=DEV))
        graph.replay()
        assert torch.equal(out, landmark_scores(lm, q, D ** -0.5, lengths=lengths))

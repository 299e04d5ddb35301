"""decode_attention on ragged stacks: per-row segment lengths read on the device, padding never read, and each row's
output bit for bit the same alone or in any stack (order, padding, batch mates).

CPU: Triton interpreter (set before triton is imported). Small shapes and a small split size (split_n = 64 with
block_n = 32: two blocks per split, several splits per segment) keep it fast and exercise the split merge."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

pytest.importorskip("triton")

from shadowkv_lab.kernels.attention import decode_attention, decode_attention_ref  # noqa: E402

GPU = os.environ["TRITON_INTERPRET"] == "0" and torch.cuda.is_available()
DEV = torch.device("cuda" if GPU else "cpu")

# the interpreter computes in numpy, which warns on an invalid operation such as -inf - -inf: make that a failure
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

H, G = 2, 6
SPLIT, BLOCK = 64, 32


def attn(q, segs, d):
    return decode_attention(q, segs, d ** -0.5, block_n=BLOCK, split_n=SPLIT)


def make_row(lens, d, seed):
    """One sequence: q (H, G, d) and per segment (k, v) (H, lens[i], d), unpadded."""
    gen = torch.Generator().manual_seed(seed)
    q = (torch.randn(H, G, d, generator=gen) * 2).to(DEV, torch.bfloat16)
    segs = [(torch.randn(H, n, d, generator=gen).to(DEV, torch.bfloat16),
             torch.randn(H, n, d, generator=gen).to(DEV, torch.bfloat16)) for n in lens]
    return q, segs


def stack(rows, extra, garbage, len_dtype=torch.int32):
    """Rows stacked on BH = B * H, each segment padded to its longest row + extra[i] entries of garbage; lengths
    per (row, head) on the device."""
    qs = torch.cat([q for q, _ in rows])
    d = qs.shape[-1]
    segs = []
    for i in range(len(rows[0][1])):
        N = max(s[i][0].shape[1] for _, s in rows) + extra[i]
        k = torch.full((len(rows) * H, N, d), garbage, dtype=torch.bfloat16, device=DEV)
        v = torch.full_like(k, -garbage if garbage == garbage else garbage)
        lens = []
        for b, (_, s) in enumerate(rows):
            n = s[i][0].shape[1]
            k[b * H:(b + 1) * H, :n] = s[i][0]
            v[b * H:(b + 1) * H, :n] = s[i][1]
            lens += [n] * H
        segs.append((k, v, torch.tensor(lens, dtype=len_dtype, device=DEV)))
    return qs, segs


# per row: lengths of three segments (resident, selected, generated); zeros, exact split multiples, one-past
ROW_LENS = [(200, 64, 1), (37, 0, 3), (0, 5, 65), (130, 129, 2)]


def rel(a, b):
    assert not torch.isnan(a).any(), "NaN in kernel output"
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30))


@pytest.mark.parametrize("d,len_dtype", [(64, torch.int32), (128, torch.int64)])
def test_ragged_matches_reference(d, len_dtype):
    """Per-(row, head) lengths in three segments, a zero length, and padding longer than a row by several splits."""
    gen = torch.Generator().manual_seed(d)
    BH, Ns = 4, (300, 140, 70)
    lens = [torch.tensor(x, dtype=len_dtype, device=DEV) for x in ([0, 17, 200, 300], [129, 0, 64, 3], [1, 70, 0, 65])]
    q = torch.randn(BH, G, d, generator=gen).to(DEV, torch.bfloat16)
    segs = []
    for N, n in zip(Ns, lens):
        k = torch.randn(BH, N, d, generator=gen).to(DEV, torch.bfloat16)
        v = torch.randn(BH, N, d, generator=gen).to(DEV, torch.bfloat16)
        pad = torch.arange(N, device=DEV)[None, :] >= n[:, None]
        segs.append((k.masked_fill(pad[..., None], float("nan")), v.masked_fill(pad[..., None], 1e4), n))
    got = attn(q, segs, d)
    ref = decode_attention_ref(q, segs, d ** -0.5)
    assert not torch.isnan(ref).any()
    assert rel(got, ref) < 1e-2
    # no lengths = all valid, the same as lengths = N; a (k, v) segment mixes with ragged ones
    full = [(k.nan_to_num(0.0, 0.0, 0.0), v, torch.full_like(n, k.shape[1])) for k, v, n in segs]
    plain = [(k, v) for k, v, _ in full]
    assert torch.equal(attn(q, full, d), attn(q, plain, d))
    mixed = [full[0][:2], segs[1], segs[2]]
    assert rel(attn(q, mixed, d), decode_attention_ref(q, mixed, d ** -0.5)) < 1e-2


def test_row_without_entries_is_zero():
    d = 64
    q, segs = make_row((70, 3), d, seed=3)
    zero = torch.zeros(H, dtype=torch.int32, device=DEV)
    ragged = [(k, v, zero) for k, v in segs]
    got = attn(q, ragged, d)
    assert torch.equal(got, torch.zeros_like(got))
    assert torch.equal(decode_attention_ref(q, ragged, d ** -0.5), torch.zeros_like(got))
    assert torch.equal(attn(q, [], d), torch.zeros_like(got))


def test_lengths_checked():
    q, segs = make_row((10,), 64, seed=4)
    k, v = segs[0]
    with pytest.raises(ValueError):
        attn(q, [(k, v, torch.ones(H + 1, dtype=torch.int32, device=DEV))], 64)
    with pytest.raises(ValueError):
        attn(q, [(k, v, torch.ones(H, device=DEV))], 64)
    with pytest.raises(ValueError):
        decode_attention(q, segs, 0.125, block_n=32, split_n=48)


@pytest.mark.parametrize("d", [64, 128])
def test_row_alone_equals_row_in_stack(d):
    rows = [make_row(lens, d, seed=10 + i) for i, lens in enumerate(ROW_LENS)]
    alone = [attn(q, segs, d) for q, segs in rows]
    for extra, garbage, len_dtype in [((0, 0, 0), float("nan"), torch.int32), ((150, 70, 3), 1e4, torch.int64)]:
        q, segs = stack(rows, extra, garbage, len_dtype)
        out = attn(q, segs, d)
        for b, ref in enumerate(alone):
            assert not torch.isnan(ref).any()
            assert torch.equal(out[b * H:(b + 1) * H], ref), (b, extra, garbage)


def test_stack_order_and_batch_mates_do_not_matter():
    d = 64
    rows = [make_row(lens, d, seed=10 + i) for i, lens in enumerate(ROW_LENS)]
    alone = [attn(q, segs, d) for q, segs in rows]
    # batch mates: one longer than every row (the padding grows by several splits), one nearly empty
    mates = [make_row((333, 200, 7), d, seed=99), make_row((1, 0, 0), d, seed=98)]
    layouts = [  # (order of the rows, batch mates, extra padding per segment, padding value)
        ([3, 1, 0, 2], [], (0, 0, 0), float("nan")),
        ([2, 0, 3, 1], [0, 1], (64, 0, 129), 1e4),
        ([1, 3, 0, 2], [1], (5, 200, 0), float("inf")),
        ([0, 2, 1], [0], (0, 0, 0), -1e4),
    ]
    for order, mate_ids, extra, garbage in layouts:
        members = [rows[i] for i in order] + [mates[j] for j in mate_ids]
        q, segs = stack(members, extra, garbage)
        out = attn(q, segs, d)
        for pos, i in enumerate(order):
            assert torch.equal(out[pos * H:(pos + 1) * H], alone[i]), (order, mate_ids, garbage, i)

"""Quantizers: HIGGS, NVFP4, FP8, plain, residual; spec parsing; bits; QuantizedTensor plumbing."""
import math

import pytest
import torch

from shadowkv_lab.quant import (
    FORMAT_HELP,
    QuantizedTensor,
    Quantizer,
    fwht,
    hadamard_matrix,
    higgs_bits,
    load_grid,
    make_quantizer,
    parse_format,
)
from shadowkv_lab.quant.grids import load_manifest
from shadowkv_lab.quant.nvfp4 import E2M1_VALUES

ALL_SPECS = [
    ("bf16", None),
    ("fp16", None),
    ("fp32", None),
    ("fp8", None),
    ("nvfp4", None),
    ("higgs-2-256", 64),
    ("higgs-4-256:signs", 32),
    ("higgs-6-4096", 16),
    ("higgs-4-16:scale=bf16", 32),
    ("residual:m=2,main=higgs-4-256,res=higgs-16-256", 32),
]


def gauss(n, c, seed=0):
    return torch.randn(n, c, generator=torch.Generator().manual_seed(seed))


def rel_err(x, y):
    return float(((x - y) ** 2).sum() / (x**2).sum())


# ---------------------------------------------------------------- Walsh-Hadamard transform
@pytest.mark.parametrize("g", [1, 2, 4, 8, 64, 256])
def test_fwht_matches_explicit_matrix(g):
    x = gauss(3 * 5, g).view(3, 5, g)
    H = hadamard_matrix(g)
    torch.testing.assert_close(fwht(x), x @ H, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(H @ H, g * torch.eye(g))
    torch.testing.assert_close(fwht(fwht(x)) / g, x, rtol=1e-5, atol=1e-5)


def test_fwht_rejects_non_power_of_two():
    with pytest.raises(ValueError, match="12"):
        fwht(torch.zeros(2, 12))


# ---------------------------------------------------------------- HIGGS
@pytest.mark.parametrize(
    "p,n,g",
    [(1, 16, 256), (1, 4, 128), (2, 16, 128), (2, 64, 128), (2, 256, 1024), (4, 256, 128), (8, 256, 128),
     (16, 256, 256), (6, 4096, 128)],
)
def test_higgs_error_equals_grid_mse(p, n, g):
    x = gauss(512, 512, seed=p * n)
    q = make_quantizer(f"higgs-{p}-{n}", group=g)
    err = rel_err(x, q.qdq(x))
    assert err == pytest.approx(load_manifest()[f"eden{p}-{n}"]["mse_per_dim"], rel=0.05)


def test_higgs_small_group_error_at_most_grid_mse():
    # y = Hx/s lies on the sphere of radius sqrt(g): for small g its coordinates have lighter tails
    # than N(0, 1), so the error drops below the Gaussian grid MSE (about 6% lower at g = 32, p = 1).
    x = gauss(512, 512, seed=9)
    err = rel_err(x, make_quantizer("higgs-1-16", group=32).qdq(x))
    assert 0.85 * 0.009497 < err <= 0.009497


def _reference_higgs(x, p, n, g):
    """Straight transcription of docs/algorithms.md ("HIGGS") with an explicit Hadamard matrix, float64 argmin."""
    N, C = x.shape
    G = math.ceil(C / g)
    xg = torch.nn.functional.pad(x.double(), (0, G * g - C)).view(N, G, g)
    H = hadamard_matrix(g, torch.float64)
    s = xg.norm(dim=-1, keepdim=True)
    y = (xg @ H) / torch.where(s > 0, s, torch.ones_like(s))
    V = math.ceil(g / p)
    vec = torch.nn.functional.pad(y, (0, V * p - g)).reshape(-1, p)
    grid = load_grid(p, n).double()
    idx = torch.cdist(vec, grid).argmin(1)
    deq = grid[idx].view(N, G, V * p)[..., :g] * s
    return idx.view(N, G * V), ((deq @ H) / g).reshape(N, G * g)[:, :C].float()


@pytest.mark.parametrize("p,n,g,C", [(4, 256, 32, 80), (8, 4096, 16, 48), (6, 4096, 64, 64), (2, 16, 8, 8)])
def test_higgs_matches_reference(p, n, g, C):
    x = gauss(64, C, seed=1)
    q = make_quantizer(f"higgs-{p}-{n}", group=g)
    qt = q.quantize(x)
    ref_idx, _ = _reference_higgs(x, p, n, g)
    codes = qt.rows["codes"].long()
    assert (codes == ref_idx).float().mean() > 0.999  # float32 vs float64 may flip exact near-ties
    # Dequantization of our codes through the explicit matrix.
    N, G = x.shape[0], math.ceil(C / g)
    V = math.ceil(g / p)
    grid = load_grid(p, n)
    s = qt.rows["scales"].float()[..., None]
    deq = (grid[codes].view(N, G, V * p)[..., :g] * s) @ hadamard_matrix(g) / g
    torch.testing.assert_close(q.dequantize(qt), deq.reshape(N, G * g)[:, :C], rtol=1e-4, atol=1e-5)


def test_higgs_4096_indices_do_not_wrap():
    q = make_quantizer("higgs-8-4096", group=64)
    x = gauss(256, 128, seed=2)
    qt = q.quantize(x)
    codes = qt.rows["codes"]
    assert codes.dtype == torch.int16
    assert int(codes.max()) > 255 and int(codes.min()) >= 0
    ref_idx, ref_deq = _reference_higgs(x, 8, 4096, 64)
    big = ref_idx > 255
    assert big.any() and (codes.long()[big] == ref_idx[big]).float().mean() > 0.999
    torch.testing.assert_close(q.dequantize(qt), ref_deq, rtol=1e-3, atol=1e-3)
    assert rel_err(x, q.dequantize(qt)) == pytest.approx(0.168, rel=0.1)


@pytest.mark.parametrize("spec", ["higgs-4-256", "higgs-2-16:signs", "higgs-8-4096"])
def test_higgs_zero_rows_and_groups(spec):
    x = gauss(6, 96)
    x[1] = 0  # whole row
    x[3, 32:64] = 0  # one group of a row
    q = make_quantizer(spec, group=32)
    y = q.qdq(x)
    assert torch.isfinite(y).all()
    assert torch.equal(y[1], torch.zeros(96))
    assert torch.equal(y[3, 32:64], torch.zeros(32))


def test_higgs_signs_change_codes_keep_error():
    x = gauss(512, 256, seed=3)
    plain = make_quantizer("higgs-4-256", group=128)
    signed = make_quantizer("higgs-4-256:signs", group=128, seed=5)
    c0, c1 = plain.quantize(x).rows["codes"], signed.quantize(x).rows["codes"]
    assert (c0 != c1).float().mean() > 0.5
    assert rel_err(x, signed.qdq(x)) == pytest.approx(rel_err(x, plain.qdq(x)), rel=0.05)
    other_seed = make_quantizer("higgs-4-256:signs", group=128, seed=6)
    assert not torch.equal(other_seed.quantize(x).rows["codes"], c1)
    assert signed.name == "higgs-4-256:signs"


@pytest.mark.parametrize("C,g", [(100, 64), (3, 128), (130, 32)])
def test_higgs_padding(C, g):
    x = gauss(300, C, seed=4)
    q = make_quantizer("higgs-2-256", group=g)
    qt = q.quantize(x)
    assert qt.shape == (300, C)
    y = q.dequantize(qt)
    assert y.shape == (300, C) and y.dtype == torch.float32
    # Padding zeros take part in the rotation, so the real channels still get ~grid-MSE error.
    assert rel_err(x, y) < 0.02


def test_higgs_p_not_dividing_group():
    q = make_quantizer("higgs-6-4096", group=64)  # 11 vectors of 6 = 66 dims for a group of 64
    x = gauss(64, 128, seed=5)
    assert q.quantize(x).rows["codes"].shape == (64, 2 * 11)
    assert rel_err(x, q.qdq(x)) < 0.15


def test_higgs_input_dtypes_and_qdq_identity():
    x = gauss(32, 128).to(torch.bfloat16)
    q = make_quantizer("higgs-4-256", group=128)
    assert torch.equal(q.qdq(x), q.dequantize(q.quantize(x)))
    assert torch.equal(q.qdq(x.half()), q.qdq(x.float().half()))


def test_higgs_bf16_scales():
    q = make_quantizer("higgs-4-256:scale=bf16", group=128)
    qt = q.quantize(gauss(8, 256))
    assert qt.rows["scales"].dtype == torch.bfloat16
    assert q.bits_per_element(256) == 2 + 16 / 128


# ---------------------------------------------------------------- bits accounting
@pytest.mark.parametrize(
    "spec,group,C,bits",
    [
        ("bf16", None, 128, 16.0),
        ("fp16", None, 128, 16.0),
        ("fp32", None, 128, 32.0),
        ("fp8", None, 128, 8.0),
        ("nvfp4", None, 128, 4.5),
        ("nvfp4", None, 20, 2 * 72 / 20),  # padded to 2 blocks
        ("higgs-4-256", 128, 128, 2.25),
        ("higgs-2-256", 1024, 1024, 4 + 32 / 1024),
        ("higgs-2-64", 128, 128, 3.25),
        ("higgs-8-256", 128, 128, 1.25),
        ("higgs-16-256", 128, 128, 0.75),
        ("higgs-6-4096", 64, 64, (11 * 12 + 32) / 64),
        ("higgs-4-256", 128, 100, 2.25 * 128 / 100),  # padded channels cost bits too
        ("residual:m=2,main=higgs-4-256,res=higgs-16-256", 128, 128, 2.25 / 2 + 0.75),
    ],
)
def test_bits_per_element(spec, group, C, bits):
    q = make_quantizer(spec, group=group)
    assert q.bits_per_element(C) == pytest.approx(bits, rel=1e-12)
    N = 10
    qt = q.quantize(gauss(N, C))
    if not spec.startswith("residual"):
        const = 32 if spec == "nvfp4" else 0
        assert qt.packed_bits == pytest.approx(N * C * bits + const)
        assert q.bits_per_element(C, n_rows=N) == pytest.approx(bits + const / (N * C))
    assert qt.nbytes_packed == math.ceil(qt.packed_bits / 8)


def test_higgs_bits_helper():
    assert higgs_bits(4, 256) == 2.0 and higgs_bits(2, 256) == 4.0 and higgs_bits(16, 256) == 0.5
    assert higgs_bits(6, 4096) == 2.0 and higgs_bits(2, 64) == 3.0


def test_storage_bytes():
    x = gauss(10, 128)
    assert make_quantizer("bf16").quantize(x).nbytes_storage == 10 * 128 * 2
    assert make_quantizer("nvfp4").quantize(x).nbytes_storage == 10 * 64 + 10 * 8 + 4
    qt = make_quantizer("higgs-8-4096", group=128).quantize(x)
    assert qt.nbytes_storage == 10 * 16 * 2 + 10 * 4


# ---------------------------------------------------------------- NVFP4
def _nvfp4_block(values):
    """One 16-wide block whose max |x| is 6, so the block scale is exactly 1 (and E4M3-exact)."""
    row = torch.zeros(16)
    row[0] = 6.0
    row[1 : 1 + len(values)] = torch.tensor(values)
    return row[None]


def test_nvfp4_rounding_and_ties_to_smaller():
    q = make_quantizer("nvfp4")
    vals = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -2.5, 2.6, 0.2, 4.9, -0.3]
    want = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, -2.0, 3.0, 0.0, 4.0, -0.5]
    y = q.qdq(_nvfp4_block(vals))[0]
    assert y[0] == 6.0
    assert y[1 : 1 + len(vals)].tolist() == want


def test_nvfp4_exact_grid_values_and_sign():
    q = make_quantizer("nvfp4")
    vals = list(E2M1_VALUES) + [-v for v in E2M1_VALUES[1:]]  # 15 values: all of E2M1 but -0
    y = q.qdq(_nvfp4_block(vals))[0]
    assert y[1:16].tolist() == vals


def test_nvfp4_saturation_after_scale_rounding():
    # Block B sets the global scale (448 / 2 = 224); block A's scale 1.03 * 224 = 230.7 rounds down
    # to E4M3 224 -> scale 1.0, so A's max 6.18 exceeds 6 and must saturate at 6, not overflow.
    x = torch.zeros(1, 32)
    x[0, 0], x[0, 16] = 6.18, 12.0
    y = make_quantizer("nvfp4").qdq(x)[0]
    assert y[0] == 6.0 and y[16] == 12.0


def test_nvfp4_zeros_padding_gaussian():
    q = make_quantizer("nvfp4")
    assert torch.equal(q.qdq(torch.zeros(3, 40)), torch.zeros(3, 40))
    x = gauss(256, 40)
    x[5] = 0
    y = q.qdq(x)
    assert y.shape == (256, 40) and torch.isfinite(y).all() and torch.equal(y[5], torch.zeros(40))
    assert 0.005 < rel_err(x, y) < 0.02  # NVFP4 on Gaussian blocks of 16 is ~1% relative MSE


def test_nvfp4_tiny_block_next_to_huge_block():
    x = torch.zeros(1, 32)
    x[0, :16] = 1e-9
    x[0, 16:] = 1e4
    y = make_quantizer("nvfp4").qdq(x)
    assert torch.isfinite(y).all()
    assert torch.allclose(y[0, 16:], x[0, 16:], rtol=0.2)


# ---------------------------------------------------------------- FP8 / plain
def test_fp8_saturates():
    x = torch.tensor([[1000.0, -1000.0, 448.0, 1.0, 0.0, -3.3, 470.0]])
    y = make_quantizer("fp8").qdq(x)[0]
    assert y[:3].tolist() == [448.0, -448.0, 448.0]
    assert y[3] == 1.0 and y[4] == 0.0 and y[6] == 448.0
    assert y[5] == torch.tensor(-3.3).to(torch.float8_e4m3fn).float()


@pytest.mark.parametrize("spec,dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)])
def test_plain(spec, dtype):
    x = gauss(4, 8)
    q = make_quantizer(spec)
    assert q.quantize(x).rows["data"].dtype == dtype
    assert torch.equal(q.qdq(x), x.to(dtype).float())
    assert q.qdq(x).dtype == torch.float32


# ---------------------------------------------------------------- residual
RES = "residual:m=2,main=higgs-4-256,res=higgs-16-256"


def _landmarks(M, C, seed=0):
    """Neighbouring landmarks are correlated (pairs share a base), like keys of adjacent chunks."""
    base = gauss((M + 1) // 2, C, seed).repeat_interleave(2, 0)[:M]
    return base + 0.5 * gauss(M, C, seed + 1)


def test_residual_beats_meta_alone():
    x = _landmarks(256, 128)
    q = make_quantizer(RES, group=128)
    main = make_quantizer("higgs-4-256", group=128)
    meta = main.qdq(x.view(128, 2, 128).mean(1)).repeat_interleave(2, 0)
    assert rel_err(x, q.qdq(x)) < 0.7 * rel_err(x, meta)


@pytest.mark.parametrize("M,m", [(7, 2), (7, 3), (1, 4), (8, 1)])
def test_residual_matches_definition(M, m):
    x = _landmarks(M, 64)
    q = make_quantizer(f"residual:m={m},main=higgs-4-256,res=higgs-16-256", group=64)
    main, res = make_quantizer("higgs-4-256", group=64), make_quantizer("higgs-16-256", group=64)
    n_meta = math.ceil(M / m)
    xp = torch.cat([x, x[-1:].expand(n_meta * m - M, 64)])
    meta = main.qdq(xp.view(n_meta, m, 64).mean(1)).repeat_interleave(m, 0)[:M]
    want = meta + res.qdq(x - meta)
    y = q.qdq(x)
    assert y.shape == (M, 64)
    torch.testing.assert_close(y, want)


def test_residual_bits():
    q = make_quantizer(RES, group=128)
    code_bits = 2 / 2 + 0.5
    assert code_bits == 1.5
    assert q.bits_per_element(128) == pytest.approx(code_bits + 32 / 128 / 2 + 32 / 128)
    # Exact for a given M (odd M pays one extra meta row).
    assert q.bits_per_element(128, n_rows=7) == pytest.approx((4 * 288 + 7 * 96) / (7 * 128))
    qt = q.quantize(_landmarks(7, 128))
    assert qt.packed_bits == 4 * 288 + 7 * 96


# ---------------------------------------------------------------- QuantizedTensor plumbing
@pytest.mark.parametrize("spec,group", ALL_SPECS)
def test_select_rows(spec, group):
    q = make_quantizer(spec, group=group)
    x = gauss(9, 64, seed=11)
    qt = q.quantize(x)
    assert isinstance(qt, QuantizedTensor) and isinstance(q, Quantizer)
    assert qt.shape == (9, 64) and qt.device.type == "cpu"
    full = q.dequantize(qt)
    assert torch.equal(q.qdq(x), full)
    idx = torch.tensor([5, 0, 3, 3, 8])
    sub = qt.select_rows(idx)
    assert sub.shape == (5, 64)
    assert torch.equal(q.dequantize(sub), full[idx])
    assert torch.equal(q.dequantize(qt.pin_memory().to("cpu", non_blocking=True)), full)


def test_select_rows_compacts_residual_meta():
    q = make_quantizer(RES, group=64)
    qt = q.quantize(_landmarks(10, 64))
    sub = qt.select_rows(torch.tensor([2, 3, 9]))
    assert sub.parts["meta"].shape[0] == 2  # meta rows 1 and 4 only
    assert sub.nbytes_packed < qt.nbytes_packed


def test_empty_input():
    for spec, group in ALL_SPECS:
        q = make_quantizer(spec, group=group)
        y = q.qdq(torch.zeros(0, 64))
        assert y.shape == (0, 64), spec


# ---------------------------------------------------------------- specs and validation
def test_names_are_canonical():
    for spec, group in ALL_SPECS:
        q = make_quantizer(spec, group=group)
        assert q.name == spec
        assert make_quantizer(q.name, group=group).name == q.name
        assert parse_format(spec).name == spec
    assert make_quantizer(" HIGGS-4-256 ", group=128).name == "higgs-4-256"
    assert make_quantizer("residual", group=128).name == RES


@pytest.mark.parametrize(
    "spec,bad",
    [
        ("int4", "int4"),
        ("higgs-3-256", "3-256"),
        ("higgs-4-abc", "abc"),
        ("higgs-4", "higgs-4"),
        ("higgs-4-256:foo", "foo"),
        ("higgs-4-256:scale=fp16", "fp16"),
        ("residual:m=0,main=higgs-4-256,res=higgs-16-256", "0"),
        ("residual:m=2,main=residual,res=higgs-16-256", "residual"),
        ("residual:m=2,mian=higgs-4-256", "mian=higgs-4-256"),
        ("residual:m=2,main=higgs-4-999,res=higgs-16-256", "4-999"),
    ],
)
def test_bad_specs(spec, bad):
    with pytest.raises(ValueError, match=bad):
        make_quantizer(spec, group=128)


@pytest.mark.parametrize("group", [100, 0, -128, 2, None, 12.0, True])
def test_bad_groups(group):
    with pytest.raises(ValueError, match="group"):
        make_quantizer("higgs-4-256", group=group)
    with pytest.raises(ValueError, match="group"):
        make_quantizer(RES, group=group)


def test_bad_group_message_names_value():
    with pytest.raises(ValueError, match="100"):
        make_quantizer("higgs-4-256", group=100)


def test_group_ignored_by_formats_without_one():
    assert make_quantizer("nvfp4", group=100).name == "nvfp4"


def test_bad_input_shape():
    with pytest.raises(ValueError, match="2-D"):
        make_quantizer("higgs-4-256", group=128).quantize(torch.zeros(2, 3, 4))


def test_format_help_lists_grammar():
    for token in ("bf16", "fp8", "nvfp4", "higgs-{p}-{n}", "residual:m={m}", "4-256", "8-4096", ":signs"):
        assert token in FORMAT_HELP


# ---------------------------------------------------------------- CUDA (skipped on CPU-only machines)
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("spec,group", ALL_SPECS)
def test_cuda_matches_cpu_and_pinned_gather(spec, group):
    q = make_quantizer(spec, group=group)
    x = gauss(300, 256, seed=12)
    qt_cpu, qt_gpu = q.quantize(x), q.quantize(x.cuda())
    assert qt_gpu.device.type == "cuda"
    y_cpu, y_gpu = q.dequantize(qt_cpu), q.dequantize(qt_gpu)
    assert y_gpu.device.type == "cuda" and y_gpu.dtype == torch.float32
    close = torch.isclose(y_gpu.cpu(), y_cpu, rtol=1e-4, atol=1e-5).all(1)
    assert close.float().mean() > 0.98  # rare nearest-point flips on exact near-ties
    # Offloading path: qt in pinned host memory, CPU indices, rows copied to the GPU.
    host = qt_cpu.pin_memory()
    idx = torch.tensor([7, 0, 299, 7])
    got = q.dequantize(host.select_rows(idx).to("cuda", non_blocking=True))
    torch.cuda.synchronize()
    torch.testing.assert_close(got.cpu(), y_cpu[idx], rtol=1e-5, atol=1e-6)
    # CUDA qt with CPU indices.
    torch.testing.assert_close(q.dequantize(qt_gpu.select_rows(idx)), y_gpu[idx.cuda()])


@pytest.mark.gpu
@cuda
def test_cuda_large_4096_grid_memory_bounded():
    x = torch.randn(65536, 1024, device="cuda")
    q = make_quantizer("higgs-8-4096", group=1024)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    qt = q.quantize(x)
    peak = torch.cuda.max_memory_allocated() - base
    assert peak < 2 * 2**30, f"quantize peaked at {peak / 2**30:.2f} GiB over its input"
    assert qt.rows["codes"].dtype == torch.int16 and int(qt.rows["codes"].max()) > 255
    assert rel_err(x, q.dequantize(qt)) == pytest.approx(0.168, rel=0.03)

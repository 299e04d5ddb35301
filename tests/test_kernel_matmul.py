"""Batch-invariant linear / rms_norm kernels and invariant_decode on a tiny Qwen2.

CPU (CI): under the Triton interpreter, set here before triton is imported. On a GPU machine run with
TRITON_INTERPRET=0 to test the compiled kernels on CUDA."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch
import torch.nn.functional as F

triton = pytest.importorskip("triton")

from shadowkv_lab.kernels.matmul import CONFIG, invariant_decode, linear, rms_norm, rms_norm_ref  # noqa: E402

GPU = os.environ["TRITON_INTERPRET"] == "0" and torch.cuda.is_available()
DEV = "cuda" if GPU else "cpu"
# K and N not multiples of the blocks, K longer than one BLOCK_K step
K_, N_ = CONFIG.block_k + 37, CONFIG.block_n + 19


def rel(a, b):
    assert not torch.isnan(a).any(), "NaN in kernel output"
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30))


def operands(M, K, N, dtype=torch.bfloat16, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(M, K, generator=gen).to(DEV, dtype)
    w = (torch.randn(N, K, generator=gen) / K**0.5).to(DEV, dtype)
    b = torch.randn(N, generator=gen).to(DEV, dtype)
    return x, w, b


@pytest.mark.parametrize("M", [1, 3, 17, 70])
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_linear_matches_fp32_reference(M, with_bias, dtype):
    x, w, b = operands(M, K_, N_, dtype, seed=M)
    b = b if with_bias else None
    out = linear(x, w, b)
    assert out.shape == (M, N_) and out.dtype == dtype
    ref = F.linear(x.float(), w.float(), None if b is None else b.float())
    # one rounding of an fp32 sum: half an ulp of the output dtype
    assert rel(out, ref) < (4e-3 if dtype == torch.bfloat16 else 5e-4)
    assert rel(out, F.linear(x, w, b)) < (8e-3 if dtype == torch.bfloat16 else 1e-3)


def test_linear_shapes_and_layouts():
    x, w, b = operands(12, K_, N_)
    xt = x.reshape(3, 4, K_).transpose(0, 1)  # non-contiguous (4, 3, K)
    out = linear(xt, w, b)
    assert out.shape == (4, 3, N_)
    assert torch.equal(out, linear(xt.contiguous(), w, b))
    assert rel(out, F.linear(xt.float(), w.float(), b.float())) < 4e-3
    assert linear(x[:0], w).shape == (0, N_)
    x32, w32, b32 = (t.float() for t in (x, w, b))  # fp32 is accepted (IEEE products)
    assert rel(linear(x32, w32, b32), F.linear(x32, w32, b32)) < 1e-5
    with pytest.raises(ValueError):
        linear(x, w.float())
    with pytest.raises(ValueError):
        linear(x, w[:, :-1])


@pytest.mark.parametrize("M", [1, 5, 64, 130])
def test_linear_batch_invariant(M):
    """Row i of linear(x) equals linear(x[i:i+1]) bit for bit, whatever M and whatever the other rows hold."""
    x, w, b = operands(M, K_, N_, seed=100 + M)
    full = linear(x, w, b)
    for i in sorted({0, M // 2, M - 1}):
        assert torch.equal(linear(x[i : i + 1], w, b)[0], full[i]), (M, i)
    if M > 1:  # the same row among other batch mates
        other = torch.randn_like(x.float()).to(x.dtype)
        other[M - 1] = x[0]
        assert torch.equal(linear(other, w, b)[M - 1], full[0])


@pytest.mark.parametrize("M", [1, 5, 64, 130])
def test_rms_norm_batch_invariant(M):
    gen = torch.Generator().manual_seed(M)
    D = 200  # not a power of two
    x = (torch.randn(M, D, generator=gen) * 3).to(DEV, torch.bfloat16)
    w = (1 + 0.1 * torch.randn(D, generator=gen)).to(DEV, torch.bfloat16)
    full = rms_norm(x, w, 1e-6)
    for i in sorted({0, M // 2, M - 1}):
        assert torch.equal(rms_norm(x[i : i + 1], w, 1e-6)[0], full[i]), (M, i)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
def test_rms_norm_matches_hf(dtype):
    """Against transformers' Qwen2RMSNorm: within one rounding of the output dtype. Not bit-identical in general: the
    sum of squares runs in another order than torch's, so rsqrt can differ in its last fp32 bit. In bf16/fp16 that
    vanishes in the final rounding for almost every element (bf16 on CPU: all of them here); in fp32 it does not."""
    from transformers.models.qwen2.modeling_qwen2 import Qwen2RMSNorm

    gen = torch.Generator().manual_seed(1)
    D = 96
    norm = Qwen2RMSNorm(D, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.2 * torch.randn(D, generator=gen))
    norm = norm.to(DEV, dtype)
    x = (torch.randn(2, 7, D, generator=gen) * 4).to(DEV, dtype)
    got = rms_norm(x, norm.weight, norm.variance_epsilon)
    ref = norm(x)
    assert got.shape == ref.shape and got.dtype == ref.dtype
    assert torch.equal(rms_norm_ref(x, norm.weight, norm.variance_epsilon), ref)
    tol = {torch.bfloat16: 1e-2, torch.float16: 2e-3, torch.float32: 1e-6}[dtype]
    torch.testing.assert_close(got, ref, rtol=tol, atol=tol)
    if dtype != torch.float32:
        assert (got == ref).float().mean() > 0.95
    # an fp32 weight on a bf16 input (promotes to fp32, as HF does)
    w32 = norm.weight.float()
    torch.testing.assert_close(rms_norm(x, w32, 1e-6), rms_norm_ref(x, w32, 1e-6), rtol=tol, atol=tol)


def _tiny(arch="qwen2", dtype=torch.bfloat16):
    from shadowkv_lab.testing import tiny_model

    model, _ = tiny_model(arch, seed=0, dtype=dtype, device=DEV, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16)
    return model  # hidden 64, vocab 384


@pytest.mark.parametrize("arch", ["qwen2", "llama", "qwen3"])
def test_invariant_decode_rows_bit_identical(arch):
    """Inside the context each row's logits of a B-row forward equal that row's forward alone, bit for bit
    (qwen3: q_norm/k_norm over the head dim too)."""
    model = _tiny(arch)
    B, T = 5, 3
    ids = torch.randint(3, model.config.vocab_size, (B, T), generator=torch.Generator().manual_seed(0)).to(DEV)
    with torch.no_grad(), invariant_decode(model, force=True) as on:
        assert on
        full = model(ids, use_cache=False).logits
        for i in (0, 2, B - 1):
            one = model(ids[i : i + 1], use_cache=False).logits
            assert torch.equal(one[0], full[i]), i
    with torch.no_grad():
        ref = model(ids, use_cache=False).logits  # torch's own kernels again
    assert rel(full, ref) < 3e-2


def test_invariant_decode_routing_and_scope():
    """The original forwards run outside the context (and on CPU without force); the kernels run inside."""
    import shadowkv_lab.kernels.matmul as mm

    model = _tiny()
    calls = {"linear": 0, "rms": 0}
    orig_linear, orig_rms = mm.linear, mm.rms_norm

    def count(kind, fn):
        def wrapped(*a, **k):
            calls[kind] += 1
            return fn(*a, **k)
        return wrapped

    ids = torch.tensor([[5, 6]], device=DEV)
    n_lin = sum(isinstance(m, torch.nn.Linear) for m in model.modules())
    n_rms = sum(type(m).__name__.endswith("RMSNorm") for m in model.modules())
    mm.linear, mm.rms_norm = count("linear", orig_linear), count("rms", orig_rms)
    try:
        with torch.no_grad():
            before = model(ids).logits
            assert calls == {"linear": 0, "rms": 0}
            with invariant_decode(model, force=True):
                model(ids)
            assert calls == {"linear": n_lin, "rms": n_rms} and n_lin == 2 * 7 + 1 and n_rms == 2 * 2 + 1
            after = model(ids).logits  # outside again: the original forwards, the same result as before patching
            assert torch.equal(before, after) and calls["linear"] == n_lin
            if not GPU:
                with invariant_decode(model) as on:  # plain CPU: does nothing
                    assert not on
                    model(ids)
                assert calls["linear"] == n_lin
    finally:
        mm.linear, mm.rms_norm = orig_linear, orig_rms
    mods = mm.patch_invariant(model)
    assert mm.patch_invariant(model) is mods  # idempotent
    assert all(m.forward.__func__ in (mm._linear_forward, mm._rms_forward) for m in mods)


def test_invariant_decode_rejects_other_rms_formula():
    class GemmaLikeRMSNorm(torch.nn.Module):  # output * (1 + weight)
        def __init__(self, d):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(d))
            self.eps = 1e-6

        def forward(self, x):
            h = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + self.eps)
            return (h * (1.0 + self.weight.float())).to(x.dtype)

    model = torch.nn.Sequential(torch.nn.Linear(8, 8), GemmaLikeRMSNorm(8)).to(DEV)
    with pytest.raises(ValueError, match="RMSNorm formula"):
        with invariant_decode(model, force=True):
            pass
    assert not hasattr(model[0], "_bi_orig_forward")  # nothing patched

"""Zero-copy row gathers (kernels.fetch.copy_rows through cache.stores.take_rows): bit-identical to indexing.

CPU (CI): the Triton interpreter (set before triton is imported) and stores.FORCE_ZERO_COPY drive the zero-copy path
on CPU tensors. GPU: TRITON_INTERPRET=0 reads real pinned host memory from the compiled kernel."""

import dataclasses
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch

pytest.importorskip("triton")

from shadowkv_lab.cache import stores  # noqa: E402
from shadowkv_lab.cache.presets import PRESETS  # noqa: E402
from shadowkv_lab.cache.stores import RowStore, head_rows, take_rows  # noqa: E402
from shadowkv_lab.generation import build_cache, decode, prefill  # noqa: E402
from shadowkv_lab.kernels.fetch import copy_rows, copy_rows_ref  # noqa: E402
from shadowkv_lab.testing import tiny_model  # noqa: E402

GPU = os.environ["TRITON_INTERPRET"] == "0" and torch.cuda.is_available()
DEV = torch.device("cuda" if GPU else "cpu")


@pytest.fixture
def force_zero_copy(monkeypatch):
    """On CPU, route gathers through the kernel (interpreted); on the GPU pinned sources take it by themselves."""
    if not GPU:
        monkeypatch.setattr(stores, "FORCE_ZERO_COPY", True)


def _host(t):
    return t.pin_memory() if GPU else t


@pytest.mark.parametrize("dtype", [torch.uint8, torch.bfloat16, torch.float32, torch.int64])
@pytest.mark.parametrize("W", [1, 7, 128, 129])
def test_copy_rows_is_a_bit_copy(dtype, W):
    g = torch.Generator().manual_seed(W)
    full = torch.randint(0, 250, (300, W + 5), generator=g).to(dtype)
    if dtype.is_floating_point:  # every bit pattern, NaN payloads and -0.0 included, must survive
        full = torch.randint(-2**15, 2**15, (300, 2 * (W + 5)), generator=g, dtype=torch.int16).view(
            torch.float32 if dtype == torch.float32 else torch.bfloat16)[:, : W + 5].contiguous()
    src = _host(full)[:, 2 : 2 + W]  # row stride W + 5: a strided view
    rows = torch.randint(0, 300, (77,), generator=g).to(DEV)
    got = copy_rows(src, rows)
    want = copy_rows_ref(src, rows)
    assert got.dtype == dtype and got.device == rows.device
    assert torch.equal(got.view(torch.uint8), want.contiguous().view(torch.uint8))
    assert copy_rows(src, rows[:0]).shape == (0, W)


def test_copy_rows_rejects_non_unit_column_stride():
    with pytest.raises(ValueError, match="unit column stride"):
        copy_rows(torch.zeros(4, 8)[:, ::2], torch.zeros(2, dtype=torch.long))


def test_head_rows_addresses_a_padded_stack():
    stack = torch.arange(2 * 3 * 10 * 4, dtype=torch.float32).view(2, 3, 10, 4)
    view = stack[1].narrow(1, 0, 7)  # (3, 7, 4) of a stack padded to 10
    rows, Ps = head_rows(view)
    assert Ps == 10
    for h in range(3):
        for p in range(7):
            assert torch.equal(rows[h * Ps + p], view[h, p])


@pytest.mark.parametrize("fmt,group", [("native", None), ("fp8", None), ("higgs-2-16", 16), ("higgs-2-16", None)])
def test_row_store_gather_zero_copy_equals_reference(fmt, group, monkeypatch):
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 200, 16, generator=g).to(torch.bfloat16)
    pos = torch.randint(0, 200, (2, 33), generator=g).to(DEV)
    st = RowStore(x, fmt, group, torch.device("cpu"), DEV, pin=GPU)
    monkeypatch.setattr(stores, "FORCE_ZERO_COPY", False)  # reference: the host-side gather
    want = st.gather(pos)
    monkeypatch.setattr(stores, "FORCE_ZERO_COPY", None if GPU else True)
    assert stores.zero_copy(next(iter(st.data.rows.values())) if st.quantizer else st.data, DEV)
    got = st.gather(pos)
    assert torch.equal(got.view(torch.int16), want.view(torch.int16)), fmt


def test_take_rows_keeps_trailing_shape(force_zero_copy):
    src = _host(torch.arange(5 * 3, dtype=torch.float32).view(5, 3))
    rows = torch.tensor([4, 0, 4], device=DEV)
    assert torch.equal(take_rows(src, rows, DEV).cpu(), src[[4, 0, 4]].cpu())
    vec = _host(torch.arange(9, dtype=torch.int64))
    assert torch.equal(take_rows(vec, rows, DEV).cpu(), torch.tensor([4, 0, 4]))


@torch.inference_mode()
def test_stacked_decode_on_zero_copy_gathers_is_identical(monkeypatch):
    """The runner's stacked step with zero-copy gathers (native, fp8 head-major and HIGGS token-major stores) gives
    the tokens and logits of the host-side gather."""
    model, _ = tiny_model("qwen2", seed=11)
    if GPU:
        model = model.to(DEV)
    g = torch.Generator().manual_seed(11)
    states = [prefill(model, torch.randint(3, 384, (n,), generator=g).to(DEV)) for n in (230, 301)]
    small = dict(local_budget=16, sparse_budget=48)
    cfgs = [dataclasses.replace(PRESETS["shadowkv_fullkeys"], outlier_chunks=2, **small),
            dataclasses.replace(PRESETS["yakv"], landmark_format="higgs-2-16", key_format="higgs-2-16",
                                value_format="higgs-2-16", **small),
            dataclasses.replace(PRESETS["yakv_exactkv"], landmark_format="fp8", value_format="fp8", **small)]

    def run(force):
        monkeypatch.setattr(stores, "FORCE_ZERO_COPY", force)
        caches, firsts, logits = [], [], {}
        for st in states:
            for cfg in cfgs:
                caches.append(build_cache(model, st, cfg))
                firsts.append(int(st.first_logits.argmax()))

        def hook(rows, lg):
            for j, i in enumerate(rows):
                logits.setdefault(i, []).append(lg[j].float().cpu())

        outs = decode(model, caches, firsts, 5, stop_ids=set(), on_logits=hook, batched=True)
        return [o.token_ids for o in outs], logits

    ref_tokens, ref_logits = run(False)
    got_tokens, got_logits = run(None if GPU else True)  # on the GPU, pinned stores choose zero-copy themselves
    assert got_tokens == ref_tokens
    for i in ref_logits:
        assert torch.equal(torch.stack(ref_logits[i]), torch.stack(got_logits[i])), i


CPU = torch.device("cpu")


@pytest.mark.parametrize("fmt, group", [("native", None), ("fp8", 128), ("higgs-2-256", 128)])
def test_row_store_holds_its_own_contiguous_copy(fmt, group):
    """The store copies its rows once into their home (stores.to_home): its own memory, never a view of the prefill."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(2, 24, 64, generator=g).transpose(0, 1).contiguous().transpose(0, 1)  # (H, P, d), not contiguous
    st = RowStore(x, fmt, group, CPU, CPU, pin=True)  # pin on a machine without an accelerator: plain host memory
    tensors = [st.data] if fmt == "native" else list(st.data.rows.values()) + list(st.data.consts.values())
    for t in tensors:
        assert t.is_contiguous() and t.data_ptr() != x.data_ptr()
    if fmt == "native":
        assert torch.equal(st.data, x)
        x.zero_()
        assert st.data.abs().sum() > 0  # a copy: the prefill's tensor can be freed or reused


def test_stack_zeroes_the_padding_of_recycled_memory(monkeypatch):
    """_stack allocates without filling and zeroes only each row's padding: memory that held other data must come
    back zero past every row's length (the kernels mask it, but the torch backend reads the padded stack)."""
    from shadowkv_lab.cache import batched

    real_empty = torch.empty
    monkeypatch.setattr(batched.torch, "empty", lambda *a, **k: real_empty(*a, **k).fill_(7.0))
    xs = [torch.randn(2, n, 8) for n in (5, 9, 3)]
    out, lens = batched._stack(xs, dim=1, block=True)
    assert lens == [5, 9, 3] and out.shape[2] % batched.BLOCK == 0
    for b, x in enumerate(xs):
        assert torch.equal(out[b, :, : x.shape[1]], x)
        assert not out[b, :, x.shape[1]:].any()

"""What SparseLayer calls to run its decode step on the Triton kernels.

    from shadowkv_lab.kernels import dispatch
    if dispatch.enabled(self):                       # in SparseLayer.decode, first line
        return dispatch.sparse_decode(self, q, k_pre, k_post, v, recorder)

enabled(layer) is True on a CUDA compute device (or under TRITON_INTERPRET=1) for every supported layout: the kernels
are the default CUDA path (SHADOWKV_LAB_KERNELS=0 selects the torch reference); there, any Triton error is raised,
never hidden. Not on CUDA: the torch reference runs (each function below says so). On CUDA
with a layout the kernels do not cover (oracle selection, NVFP4 or residual landmarks, NVFP4 keys/values, HIGGS
keys/values with a group smaller than a token row, fp32 models), enabled() warns once per reason and returns False, so the
reference path runs for that layer, loudly.

Per layer the kernels keep, as attributes of the layer (`_kstate`): the landmarks in kernel layout, the step buffer of
the selected keys/values (post-RoPE, model dtype), and the ResidentSet of the cache-hit policy: a selected row that
was already selected at the previous step stays in its slot; only misses are read from pinned host memory (zero-copy)
or rebuilt from U and SV.
"""

from __future__ import annotations

import os
import warnings

import torch

from shadowkv_lab.cache.key_offset import FLAG
from shadowkv_lab.cache.stores import pinned_host, take_rows

from .attention import decode_attention
from .common import can_run, interpreting, rope_table
from .fetch import ResidentSet, gather_rows, higgs_rows, lowrank_rows, union_rows
from .scoring import FMT_FP8, FMT_HIGGS, FMT_NATIVE, Landmarks, landmark_scores, select_topk

_WARNED: set = set()


# ---------------------------------------------------------------------------------------------- support
def _quant_kind(q) -> str:
    return type(q).__name__ if q is not None else "native"


def unsupported_reason(layer) -> str | None:
    """None when the kernels cover this layer's layout, else why not."""
    cfg = layer.cfg
    if cfg.selection != "landmarks":
        return f"selection={cfg.selection!r} (analysis only)"
    if cfg.landmark_offset != "none":
        return f"landmark_offset={cfg.landmark_offset!r} (scored by the torch reference)"
    lq = layer.landmark_q
    kind = _quant_kind(lq)
    if kind not in ("native", "PlainQuantizer", "FP8Quantizer", "HiggsQuantizer"):
        return f"landmark format {cfg.landmark_format!r}"
    if kind == "HiggsQuantizer" and (lq.group != layer.d or layer.d % lq.p):
        return f"HIGGS landmarks with group {lq.group} != head_dim {layer.d}"
    if layer.d % 32:
        return f"head_dim {layer.d} not a multiple of 32"
    if layer.local_k.dtype not in (torch.bfloat16, torch.float16):
        # the scoring and attention kernels take bf16/fp16 tensor-core operands: an fp32 model would lose precision
        return f"model dtype {layer.local_k.dtype} (the kernels run bf16/fp16 models)"
    stores = [("values", layer.values)] + ([("keys", layer.keys)] if layer.rank <= 0 else [])
    for name, st in stores:
        first = st.row_tensor
        if first.device.type == "cpu" and torch.cuda.is_available() and not pinned_host(first):
            return f"{name} in pageable host memory (after a stacked decode); zero-copy needs pinned rows"
        k = _quant_kind(st.quantizer)
        if k not in ("native", "PlainQuantizer", "FP8Quantizer", "HiggsQuantizer"):
            return f"{name} format {st.fmt!r}"
        if k == "HiggsQuantizer" and not (st.token_major and st.group == st.H * st.d):
            return f"HIGGS {name} with group {st.group} (kernels need group = H*d, token-major rows)"
        if st.offset is not None and k != "HiggsQuantizer":
            return f"key offset {st.offset.rule!r} with {st.fmt!r} keys (the kernels restore offsets of HIGGS keys)"
        if k == "PlainQuantizer" and st.quantizer.dtype != layer.local_k.dtype:
            return f"{name} stored as {st.quantizer.dtype}, model dtype {layer.local_k.dtype}"
    return None


def enabled(layer) -> bool:
    """True: run this layer's decode on the kernels. False off CUDA (torch reference) and, with a warning, for
    layouts the kernels do not cover."""
    if not (layer.ctx.compute_device.type == "cuda" or interpreting()):
        return False
    # The default on CUDA: the kernels replicate the reference operation for operation (greedy tokens identical on
    # real prompts, benchmarks/results/kernels_e2e.json). SHADOWKV_LAB_KERNELS=0 runs the torch reference instead
    # (to compare paths, or to rule the kernels out); any other value is an error, never a silent default.
    flag = os.environ.get("SHADOWKV_LAB_KERNELS", "1")
    if flag not in ("0", "1"):
        raise ValueError(f"SHADOWKV_LAB_KERNELS={flag!r}: allowed are 1 (Triton kernels, the default on CUDA) and 0 "
                         "(torch reference)")
    if flag == "0":
        return False
    reason = unsupported_reason(layer)
    if reason is not None:
        if reason not in _WARNED:
            _WARNED.add(reason)
            warnings.warn(f"shadowkv_lab.kernels: {reason}: this layer runs the torch reference decode", stacklevel=2)
        return False
    return True


# ---------------------------------------------------------------------------------------------- per-layer state
class _KState:
    pass


def _state(layer) -> _KState:
    st = getattr(layer, "_kstate", None)
    if st is None:
        st = _KState()
        st.landmarks = _landmarks(layer)
        st.cand_ids = layer.cand_ids
        st.table = rope_table(layer.ctx.rope, layer.L, layer.d, layer.local_k.dtype, layer.local_k.device)
        st.K = -1
        layer._kstate = st
    return st


def _stacked(layer, key: str) -> torch.Tensor:
    """(H, ...) stack of every head's landmark tensor `key`; the heads' QuantizedTensors are re-pointed at views of
    it, so the GPU holds one copy (the torch reference path keeps working on the views)."""
    data = torch.stack([t.rows[key] for t in layer.landmarks]).contiguous()
    for h, t in enumerate(layer.landmarks):
        t.rows[key] = data[h]
    return data


def _landmarks(layer) -> Landmarks:
    lq = layer.landmark_q
    kind = _quant_kind(lq)
    if kind == "native":
        return Landmarks(FMT_NATIVE, layer.landmarks.contiguous())
    if kind == "PlainQuantizer":
        return Landmarks(FMT_NATIVE, _stacked(layer, "data"))
    if kind == "FP8Quantizer":
        return Landmarks(FMT_FP8, _stacked(layer, "data"))
    from shadowkv_lab.quant import load_grid

    dev = layer.ctx.compute_device
    codes = _stacked(layer, "codes")
    scales = _stacked(layer, "scales")[..., 0]  # (H, M); group = head_dim: one scale per landmark
    signs = lq._sign_vec(dev) if lq.signs else None
    return Landmarks(FMT_HIGGS, codes, scales.float(), load_grid(lq.p, lq.n, dev), lq.p, signs,
                     dtype=layer.landmark_dtype)  # the reference scores landmarks rounded to the model dtype


# ---------------------------------------------------------------------------------------------- decode pieces
def score_and_select(layer, qg: torch.Tensor) -> torch.Tensor:
    """qg (H, G, d) -> selected token positions (H, k) long, as SparseLayer.select (same rule, same budget).
    Off CUDA (and outside the interpreter) this is SparseLayer.select, the torch reference."""
    if not can_run(qg):
        return layer.select(qg)
    cfg = layer.cfg
    n_sel = min(layer.budget // layer.c, layer.M)
    if n_sel >= layer.M:
        return layer._chunk_positions(layer.cand_ids)
    if n_sel == 0:
        return layer.cand_ids[:, :0]
    st = _state(layer)
    score = landmark_scores(st.landmarks, qg, layer.ctx.scaling, cfg.scoring,
                            bf16_probs=cfg.scoring == "softmax_max" and cfg.score_precision == "bf16")
    return select_topk(score, n_sel, st.cand_ids, layer.c)


def _fetch(store, src, slots, n, out, H, table=None):
    """Rows `src` of a RowStore into out at `slots` (first n[h] rows per head), dequantized, RoPE'd if table."""
    d = store.d
    rp = src if table is not None else None
    kind = _quant_kind(store.quantizer)
    if kind in ("native", "PlainQuantizer", "FP8Quantizer"):
        data = store.data if kind == "native" else store.data.rows["data"]
        if kind == "native":  # (H, P, d)
            strides = (0, data.stride(0), data.stride(1))
        elif store.token_major:  # (P, H*d)
            strides = (0, d, data.stride(0))
        else:  # (H*P, d)
            strides = (0, store.P * data.stride(0), data.stride(0))
        gather_rows(data, strides, H, src, out, slots, n, FMT_FP8 if kind == "FP8Quantizer" else FMT_NATIVE, table, rp)
    else:  # HIGGS token rows: dequantize each distinct missed token once, then scatter its head slices
        uniq, n_u, inv = union_rows(src, n, H)
        buf = torch.empty(1, uniq.shape[1], H * d, dtype=out.dtype, device=out.device)
        rows = store.data.rows
        higgs_rows(rows["codes"][None], rows["scales"][None], _grid(store.quantizer, out.device), store.group,
                   uniq, n_u, buf)
        if store.offset is not None:  # add the key offset back before RoPE, as RowStore.restore does
            flag = take_rows(rows[FLAG], uniq[0], out.device).bool() if store.offset.selective else None
            buf[0] = store.offset.restore(buf[0], flag, store.offset.row_mu(H))
        gather_rows(buf[0], (0, d, H * d), H, inv, out, slots, n, FMT_NATIVE, table, rp)


def _grid(quantizer, device):
    from shadowkv_lab.quant import load_grid

    if quantizer.signs:
        raise NotImplementedError("HIGGS keys/values with random signs are not supported by the kernels")
    return load_grid(quantizer.p, quantizer.n, device)


def gather_selected(layer, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Post-RoPE keys and values of the selected positions (H, k) -> (H, k, d) each, in the layer's step buffer
    (slot order, reused next step: copy them if they must outlive it). Only rows not resident from the previous
    step are fetched (values, stored keys: zero-copy from pinned host memory) or rebuilt (low-rank keys).
    Off CUDA (and outside the interpreter) this is SparseLayer.selected_kv, the torch reference."""
    if not can_run(positions):
        return layer.selected_kv(positions)
    st = _state(layer)
    H, K, d = layer.H, positions.shape[1], layer.d
    dev, dtype = layer.local_k.device, layer.local_k.dtype
    if st.K != K:
        st.K = K
        st.resident = ResidentSet(H, K, dev)
        st.k_buf = torch.empty(H, K, d, dtype=dtype, device=dev)
        st.v_buf = torch.empty(H, K, d, dtype=dtype, device=dev)
    src, slots, n = st.resident.update(positions)
    if layer.rank > 0:
        lowrank_rows(layer.U[None], layer.SV.contiguous(), src, st.k_buf, st.table, slots, n)
    else:
        _fetch(layer.keys, src, slots, n, st.k_buf, H, st.table)
    _fetch(layer.values, src, slots, n, st.v_buf, H)
    return st.k_buf, st.v_buf


def attend(qg: torch.Tensor, segments: list[tuple[torch.Tensor, torch.Tensor]], scaling: float) -> torch.Tensor:
    """Exact attention of qg (H, G, d) over the KV segments [(k, v) (H, N_i, d)] -> (H, G, d), no concatenation.
    Off CUDA (and outside the interpreter) this is cache.layer.attend over the concatenation (the reference)."""
    if not can_run(qg):
        from shadowkv_lab.cache.layer import attend as ref

        return ref(qg, torch.cat([k for k, _ in segments], 1), torch.cat([v for _, v in segments], 1), scaling)
    return decode_attention(qg, segments, scaling)


def sparse_decode(layer, q, k_pre, k_post, v, recorder=None) -> torch.Tensor:
    """Drop-in for SparseLayer.decode on the kernels: q (Hq, d), k_pre/k_post/v (H, d) of the new token -> (Hq, d)."""
    H, d = layer.H, layer.d
    layer.gen.append(k_post, v)
    qg = q.view(H, layer.G, d)
    positions = score_and_select(layer, qg)
    sel_k, sel_v = gather_selected(layer, positions)
    layer.step_buffer_bytes = max(layer.step_buffer_bytes, sel_k.nbytes + sel_v.nbytes)
    gk, gv = layer.gen.view()
    segs = [(layer.out_k, layer.out_v), (layer.local_k, layer.local_v), (sel_k, sel_v), (gk, gv)]
    out = attend(qg, segs, layer.ctx.scaling)
    layer.last_selection = positions
    if recorder is not None:
        recorder.on_step(layer, qg, positions, out)
    return out.view(-1, d)


def hit_rate(layer) -> float | None:
    """Share of selected rows found resident (not fetched) since the layer's first kernel step."""
    st = getattr(layer, "_kstate", None)
    return st.resident.hit_rate() if st is not None and st.K > 0 else None

"""Batched decode step: many sequences ("rows"), one set of ops per layer and method, with two backends.

`SparseLayer.decode` / `ExactLayer.decode` are the per-row torch reference (tests restate them independently). The
production step stacks the rows of one method: every per-layer tensor is padded to the longest row and stacked on a
new batch dimension, with per-row lengths for the padding, so a step costs O(layers x methods) ops whatever the
number of rows. A single row is B = 1 of the same step. The math is the reference's (fp32 scores, per-query-head
softmax, max over the GQA group, top-k, fp32 attention); only padding and reduction order differ.

Backends (one interface: score, select, fetch, attend):
- "torch": CPU and the readable version. Batch-invariant by construction (BLOCK below).
- "triton": CUDA (or the interpreter when asked for). The kernels take per-row lengths from device tensors and use
  fixed tiles and splits, so they are batch-invariant too, and the step has no host synchronisation: the plan can
  capture a whole decode forward in a CUDA graph (`BatchPlan.forward`).
A row's tokens do not depend on its batch mates, the padding, the wave size or recording, on either backend.

Landmarks: the step dequantizes each row's landmarks once, when stacking, to the model dtype (the reference), unless
landmark_scoring="codes": then the triton backend stacks the HIGGS codes and scales and scores them through each
query's lookup table (kernels/scoring_lut.py, never dequantized), and the torch backend scores fp32 dequantized
landmarks, the same q . l (SparseLayer._landmarks).

The step never advances a row's length itself: it writes the new token's K/V at the row's current length and
attends over length + 1 entries; `BatchPlan.advance` moves the lengths after the forward. That makes the step a pure
function of device state, which is what a replayed CUDA graph needs.

Stacking moves each row's tensors into the stack and leaves the row holding views of it, so memory is not doubled
and each row's memory report is unchanged; `unstack` hands the generated tokens back to the rows.

Shapes: B stacked rows, H KV heads, G query heads per KV head, d head dim, c chunk size; `*max` = longest row.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import warnings

import torch

from ..selection import chunk_positions, rank_keys, topk_indices
from .layer import ExactLayer, SparseLayer
from .key_offset import FLAG
from .record import RowsLayout, record_rows, rows_layout
from .stores import RowStore, pinned_host, take_qrows, take_rows, zero_copy

NEG_INF = float("-inf")

# Batch invariance (docs/algorithms.md, "Batch invariance"): a row's result must not depend on its batch mates or on
# how far the stack pads it. Every length a reduction runs over is padded at the end to a multiple of BLOCK; each
# block is reduced by a product of one fixed shape, and the blocks are summed by a pairwise tree whose trailing
# zero entries (padding) pass through unchanged. A row alone (B = 1) and the same row padded inside a stack then
# add the same numbers in the same order, bit for bit.
BLOCK = 64


def round_up(n: int, m: int = BLOCK) -> int:
    return -(-n // m) * m


def _pad_end(x: torch.Tensor, dim: int, n: int, value=0) -> torch.Tensor:
    """x with `dim` padded at the end to length n (>= its length) with `value`."""
    extra = n - x.shape[dim]
    if extra == 0:
        return x
    shape = list(x.shape)
    shape[dim] = extra
    return torch.cat([x, x.new_full(shape, value)], dim)


def tree_sum(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Sum over `dim` by pairing halves after zero-padding it to a power of two. Entries past a row's own count are
    zeros, so the result equals the row's own sum bit for bit whatever the padded length (x + 0 == x)."""
    n = x.shape[dim]
    x = _pad_end(x, dim, 1 << max(n - 1, 0).bit_length())
    while x.shape[dim] > 1:
        h = x.shape[dim] // 2
        x = x.narrow(dim, 0, h) + x.narrow(dim, h, h)
    return x.squeeze(dim)


def bmm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a (..., m, k) @ b (..., k, n) with equal leading dims, as one batched product in which every item runs the same
    kernel whatever the batch count. On CPU, MKL threads a lone product (batch of one) differently, so its sums round
    differently; a batch of one gets a zero mate."""
    lead, (m, n) = a.shape[:-2], (a.shape[-2], b.shape[-1])
    a3, b3 = a.reshape(-1, m, a.shape[-1]), b.reshape(-1, b.shape[-2], n)
    if a3.shape[0] == 1:
        return torch.bmm(torch.cat([a3, torch.zeros_like(a3)]), torch.cat([b3, torch.zeros_like(b3)]))[:1].view(*lead, m, n)
    return torch.bmm(a3, b3).view(*lead, m, n)


def _blocks(x: torch.Tensor) -> torch.Tensor:
    """(B, H, N, d) with N a multiple of BLOCK -> (B, H, N / BLOCK, BLOCK, d)."""
    return x.unflatten(2, (-1, BLOCK))


def block_scores(q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """q (B, H, G, d), k (B, H, N, d), N a multiple of BLOCK -> fp32 q . k (B, H, G, N), one (G, d) x (d, BLOCK)
    product per block."""
    B, H, G, d = q.shape
    kb = _blocks(k.float())  # (B, H, nb, BLOCK, d)
    nb = kb.shape[2]
    s = bmm(q.float().unsqueeze(2).expand(B, H, nb, G, d), kb.transpose(-1, -2))  # (B, H, nb, G, BLOCK)
    return s.transpose(2, 3).reshape(B, H, G, nb * BLOCK)


def softmax_invariant(s: torch.Tensor) -> torch.Tensor:
    """softmax over the last dim (a multiple of BLOCK; masked entries -inf) whose value in a row's own entries does not
    depend on how many masked entries follow them."""
    e = torch.exp(s - s.amax(dim=-1, keepdim=True))
    total = tree_sum(e.unflatten(-1, (-1, BLOCK)).sum(-1), -1)
    return e / total.unsqueeze(-1)


def attend_masked(q: torch.Tensor, segments: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]], scaling: float) -> torch.Tensor:
    """Batched `layer.attend` over the concatenation of key/value segments, without materialising it (a full
    prompt's K/V is never copied per step), batch-invariant (BLOCK). q: (B, H, G, d); segments: (k, v (B, H, N_i, d),
    valid (B, N_i) bool), each row's valid entries first; N_i is padded here to a multiple of BLOCK when it is not.
    -> (B, H, G, d)."""
    B, H, G, d = q.shape
    segments = [seg for seg in segments if seg[0].shape[2]]  # an empty selection adds nothing
    scores = []
    for k, v, m in segments:
        n = round_up(k.shape[2])
        k, m = _pad_end(k, 2, n), _pad_end(m, 1, n, False)
        scores.append(block_scores(q, k).masked_fill(~m[:, None, None, :], NEG_INF) * scaling)
    top = torch.stack([s.amax(dim=-1) for s in scores]).amax(dim=0).unsqueeze(-1)  # (B, H, G, 1), exact
    out = total = None
    for s, (_, v, _) in zip(scores, segments):
        e = torch.exp(s - top)  # masked entries: exactly 0
        eb = e.unflatten(-1, (-1, BLOCK)).transpose(2, 3)  # (B, H, nb, G, BLOCK)
        vb = _blocks(_pad_end(v.float(), 2, s.shape[-1]))  # (B, H, nb, BLOCK, d)
        o = tree_sum(bmm(eb, vb), 2)  # (B, H, G, d)
        t = tree_sum(eb.sum(-1), 2)  # (B, H, G)
        out, total = (o, t) if out is None else (out + o, total + t)
    return (out / total.unsqueeze(-1)).to(q.dtype)


def _stack(xs: list[torch.Tensor], dim: int = 1, block: bool = False) -> tuple[torch.Tensor, list[int]]:
    """Pad tensors of equal shape except `dim` with zeros to the longest (rounded up to a multiple of BLOCK with
    `block`) and stack them on a new dim 0."""
    lens = [x.shape[dim] for x in xs]
    n = round_up(max(lens)) if block else max(lens)
    shape = list(xs[0].shape)
    shape[dim] = n
    # A pinned source stays pinned: the stacked gather reads host rows zero-copy from the GPU (stores.take_rows).
    # Only the padding is zeroed: a zero-filled stack would write every byte twice (tens of GB for a wave of
    # offloaded rows).
    out = torch.empty([len(xs)] + shape, dtype=xs[0].dtype, device=xs[0].device, pin_memory=pinned_host(xs[0]))
    for b, x in enumerate(xs):
        out[b].narrow(dim, 0, x.shape[dim]).copy_(x)
        out[b].narrow(dim, x.shape[dim], n - x.shape[dim]).zero_()
    return out, lens


def _cat_rows(xs: list[torch.Tensor], pin: bool) -> torch.Tensor:
    """torch.cat(xs) along dim 0, written once into host memory that is page-locked when `pin`."""
    out = torch.empty((sum(x.shape[0] for x in xs), *xs[0].shape[1:]), dtype=xs[0].dtype, device=xs[0].device,
                      pin_memory=pin)
    return torch.cat(xs, out=out)


def _adopt(objs, attr: str, dim: int = 1, block: bool = False) -> tuple[torch.Tensor, list[int]]:
    """_stack of every obj's tensor `attr`, leaving each obj holding its (unpadded) view of the stack."""
    stacked, lens = _stack([getattr(o, attr) for o in objs], dim, block)
    for b, (o, n) in enumerate(zip(objs, lens)):
        setattr(o, attr, stacked[b].narrow(dim, 0, n))
    return stacked, lens


def _adopt_cat(objs, attrs: tuple[str, ...]) -> tuple[torch.Tensor, list[int]]:
    """Each obj's tensors `attrs` (H, n_i, d) concatenated along dim 1, stacked (B, H, N, d) with N a multiple of BLOCK
    and each row's tokens first; every obj keeps views of its part."""
    rows = [torch.cat([getattr(o, a) for a in attrs], 1) for o in objs]
    stacked, lens = _stack(rows, 1, block=True)
    for b, o in enumerate(objs):
        start = 0
        for a in attrs:
            n = getattr(o, a).shape[1]
            setattr(o, a, stacked[b].narrow(1, start, n))
            start += n
    return stacked, lens


def _lengths_mask(lens: list[int], n: int, device) -> torch.Tensor:
    """(B, n) bool: position < length of the row."""
    return torch.arange(n, device=device).unsqueeze(0) < torch.tensor(lens, device=device).unsqueeze(1)


def row_alone(cache) -> str | None:
    """None when this SequenceCache's rows can share a stack with other rows of its method, else why it runs in a
    stack of its own (B = 1 of the same step): quantized stores with per-tensor constants or nested parts cannot be
    concatenated with another row's."""
    for lay in cache.layers:
        if isinstance(lay, ExactLayer):
            continue
        stores = [lay.values] + ([lay.keys] if lay.rank <= 0 else [])
        for st in stores:
            if st.quantizer is not None and (st.data.consts or st.data.parts):
                return f"{st.fmt} store (per-tensor constants or nested parts)"
    return None


def group_key(cache) -> tuple:
    """Rows with equal keys stack together: same method and, per layer, the same layer kind."""
    return (cache.config, tuple(type(lay).__name__ for lay in cache.layers))


# ---------------------------------------------------------------------------------------------- backends
BACKENDS = ("torch", "triton")
_WARNED: set = set()


def default_backend(device: torch.device) -> str:
    """The Triton kernels on CUDA (SHADOWKV_LAB_KERNELS=0 selects torch there, to compare), torch elsewhere."""
    flag = os.environ.get("SHADOWKV_LAB_KERNELS", "1")
    if flag not in ("0", "1"):
        raise ValueError(f"SHADOWKV_LAB_KERNELS={flag!r}: allowed are 1 (Triton kernels on CUDA, the default) and 0 (torch)")
    return "triton" if device.type == "cuda" and flag == "1" else "torch"


def default_graphs(device: torch.device, backend: str) -> bool:
    """CUDA graphs on CUDA with the Triton backend; SHADOWKV_LAB_GRAPHS=0 replays nothing (every step eager), to compare
    or to isolate a capture problem."""
    flag = os.environ.get("SHADOWKV_LAB_GRAPHS", "1")
    if flag not in ("0", "1"):
        raise ValueError(f"SHADOWKV_LAB_GRAPHS={flag!r}: allowed are 1 (CUDA graphs on CUDA with Triton, the default) "
                         "and 0 (eager steps)")
    return device.type == "cuda" and backend == "triton" and flag == "1"


def _quant_kind(q) -> str:
    return type(q).__name__ if q is not None else "native"


def triton_reason(layer) -> str | None:
    """None when the Triton backend covers this layer, else why not (the group then runs the torch backend, warned)."""
    dtype = layer.local_k.dtype if isinstance(layer, SparseLayer) else layer.k.dtype
    d = layer.d if isinstance(layer, SparseLayer) else layer.k.shape[-1]
    if dtype not in (torch.bfloat16, torch.float16):
        return f"model dtype {dtype} (the kernels take bf16/fp16 operands)"
    if d & (d - 1) or d < 32:
        return f"head_dim {d} (the kernels need a power of two >= 32)"
    if isinstance(layer, ExactLayer):
        return None
    if layer.cfg.landmark_scoring == "codes" and layer.cfg.selection == "landmarks":
        J = d // layer.landmark_q.p
        if d % layer.landmark_q.p or J & (J - 1):
            return (f"HIGGS landmarks of {d / layer.landmark_q.p:g} codes per head (the lookup-table scorer needs a "
                    "power of two)")
    stores = [("values", layer.values)] + ([("keys", layer.keys)] if layer.rank <= 0 else [])
    for name, st in stores:
        kind = _quant_kind(st.quantizer)
        if kind not in ("native", "PlainQuantizer", "FP8Quantizer", "HiggsQuantizer"):
            return f"{name} format {st.fmt!r}"
        if kind == "PlainQuantizer" and st.quantizer.dtype != dtype:
            return f"{name} stored as {st.quantizer.dtype}, model dtype {dtype}"
        if kind == "HiggsQuantizer" and not (st.token_major and st.group == st.H * st.d and not st.quantizer.signs):
            return f"HIGGS {name} with group {st.group} (the kernels dequantize whole token rows, group = H*d)"
        if st.offset is not None and kind != "HiggsQuantizer":
            return f"key offset {st.offset.rule!r} with {st.fmt!r} keys"
    return None


def replayable(cache) -> bool:
    """Whether a row's steps can be captured in a CUDA graph and replayed (BatchPlan.forward): graphs on for the
    default backend, every layer on the Triton backend (triton_reason) and no attention recorded."""
    if cache.recorder is not None:
        return False
    dev = cache.layers[0].ctx.compute_device
    return default_graphs(dev, default_backend(dev)) and all(triton_reason(lay) is None for lay in cache.layers)


def _resolve_backend(layers, backend: str) -> str:
    if backend == "torch":
        return "torch"
    why = triton_reason(layers[0])
    if why is None:
        return "triton"
    if why not in _WARNED:
        _WARNED.add(why)
        warnings.warn(f"stacked decode step: {why}: these rows run the torch backend", stacklevel=3)
    return "torch"


def _per_head(x: torch.Tensor, H: int) -> torch.Tensor:
    """(B,) per-row integers -> (B*H,) int32, each row's value repeated for its H KV heads (kernel row bh = b*H + h)."""
    return x.repeat_interleave(H).to(torch.int32)


# ---------------------------------------------------------------------------------------------- pieces
class RowState:
    """Lengths of the generated tokens of B stacked rows, shared by every layer of their RowGroup, and which rows are
    still generating. Device tensors are updated in place (a captured CUDA graph reads them at every replay)."""

    def __init__(self, lens: list[int], H: int, device):
        self.lens, self.H = list(lens), H
        self.t = torch.tensor(lens, device=device, dtype=torch.long)  # (B,) tokens held; the step writes at t
        self.seen_bh = _per_head(self.t + 1, H)  # (B*H,) entries attended: held + the new token
        self.active = torch.ones(len(lens), dtype=torch.bool, device=device)

    def set_active(self, flags: list[bool]) -> None:
        self.active.copy_(torch.tensor(flags, dtype=torch.bool), non_blocking=True)

    def advance(self, flags: list[bool]) -> None:
        """After a step: rows that generated a token hold one more."""
        inc = torch.tensor(flags, dtype=torch.long).to(self.t.device, non_blocking=True)
        self.t += inc
        self.seen_bh.copy_(_per_head(self.t + 1, self.H))
        self.lens = [n + int(a) for n, a in zip(self.lens, flags)]


class _GenStack:
    """Generated-token K/V of B rows, (B, H, cap, d), with a capacity fixed for the stack's lifetime (the longest row's
    tokens at its cap, rounded up to BLOCK; never reallocated, so a captured graph stays valid). The buffer starts
    zeroed, so the padded view holds finite values only (0 x NaN is NaN)."""

    def __init__(self, bufs, state: RowState, capacity: int):
        self.bufs, self.state = bufs, state
        first = bufs[0].k
        B, (H, _, d) = len(bufs), first.shape
        cap = round_up(max(capacity, max(b.length for b in bufs) + 1, 1))
        self.k = first.new_zeros(B, H, cap, d)
        self.v = first.new_zeros(B, H, cap, d)
        for i, b in enumerate(bufs):
            gk, gv = b.view()
            self.k[i, :, : b.length] = gk
            self.v[i, :, : b.length] = gv
        self.rows = torch.arange(B, device=first.device)

    def write(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """k, v: (B, H, d) of the new token, stored at each row's current length (RowState.advance moves it)."""
        if max(self.state.lens) + 1 > self.k.shape[2]:
            raise RuntimeError(f"generated-token stack full ({self.k.shape[2]} tokens): a row ran past its cap")
        self.k[self.rows, :, self.state.t] = k
        self.v[self.rows, :, self.state.t] = v

    def view(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """torch backend: (k, v (B, H, N, d), valid (B, N)), N = the longest row's entries rounded up to BLOCK."""
        n = round_up(max(self.state.lens) + 1)
        valid = torch.arange(n, device=self.k.device).unsqueeze(0) < (self.state.t + 1).unsqueeze(1)
        return self.k[:, :, :n], self.v[:, :, :n], valid

    def segment(self):
        """triton backend: the whole capacity as (B*H, cap, d) views with each row's entries (B*H,)."""
        B, H, cap, d = self.k.shape
        return self.k.view(B * H, cap, d), self.v.view(B * H, cap, d), self.state.seen_bh

    def unstack(self) -> None:
        for i, b in enumerate(self.bufs):
            b.k, b.v, b.length = self.k[i], self.v[i], self.state.lens[i]


class _StackedRows:
    """RowStores of B rows as one store; gather(positions (B, H, K)) -> (B, H, K, d) on the compute device (torch),
    fetch(positions (B*H, K), out (B*H, K, d)) on the kernels (dequantized, RoPE'd with a table)."""

    def __init__(self, stores: list[RowStore]):
        s0 = stores[0]
        self.B, self.H, self.d, self.dtype, self.home, self.dev = len(stores), s0.H, s0.d, s0.dtype, s0.home, s0.compute_device
        self.quantizer, self.token_major = s0.quantizer, s0.token_major
        self.kind = _quant_kind(s0.quantizer)
        self.store0 = s0  # restores dequantized rows (model dtype, key offset) as every store of the group does
        # Key offsets, one per row: (B, 1, H*d) token-major, (B, H, 1, d) head-major; None without an offset.
        self.mu = None
        if s0.offset is not None:
            mu = torch.stack([s.offset.mu for s in stores])  # (B, H, d)
            self.mu = mu.view(len(stores), 1, -1) if self.token_major else mu.unsqueeze(2)
        if self.quantizer is None:
            self.data, _ = _adopt(stores, "data")  # (B, H, Pmax, d) at home
            self.zc = zero_copy(self.data, self.dev)
            return
        # Quantized: concatenate the per-row tensors (rows are independent) and address them with offsets.
        per_row = [s.P if self.token_major else s.H * s.P for s in stores]
        offs = list(itertools.accumulate(per_row[:-1], initial=0))
        keys = list(s0.data.rows)
        pin = pinned_host(s0.row_tensor)  # zero-copy gathers need pinned rows: concatenate straight into pinned memory
        rows = {k: _cat_rows([s.data.rows[k] for s in stores], pin) for k in keys}
        self.data = dataclasses.replace(s0.data, shape=(sum(per_row), s0.data.shape[1]), rows=rows)
        for s, o, n in zip(stores, offs, per_row):
            s.data = dataclasses.replace(s.data, rows={k: v[o : o + n] for k, v in rows.items()})
        self.zc = zero_copy(rows[keys[0]], self.dev)
        idx_home = self.dev if self.zc else self.home  # where the row indices are computed
        self.offs = torch.tensor(offs, device=idx_home)
        self.P = torch.tensor([s.P for s in stores], device=idx_home)
        # kernel addressing: row bh's position p is flat row base_bh[bh] + p (+ the head's slice when token-major)
        P_dev, offs_dev = self.P.to(self.dev), self.offs.to(self.dev)
        heads = torch.arange(self.H, device=self.dev).repeat(self.B)
        self.base_bh = offs_dev.repeat_interleave(self.H) + (0 if self.token_major else heads * P_dev.repeat_interleave(self.H))
        self.offs_dev = offs_dev

    def gather(self, pos: torch.Tensor) -> torch.Tensor:
        B, H, K = pos.shape
        pos = pos.to(self.dev if self.zc else self.home)
        idx_dev = pos.device
        if self.quantizer is None:
            if self.zc:
                Pm = self.data.shape[2]
                flat = (pos + (torch.arange(B * H, device=idx_dev) * Pm).view(B, H, 1)).reshape(-1)
                return take_rows(self.data.view(-1, self.d), flat, self.dev).view(B, H, K, self.d)
            rows = torch.gather(self.data, 2, pos.unsqueeze(-1).expand(B, H, K, self.d))
            return rows.to(self.dev, non_blocking=True)
        offs, P = self.offs, self.P
        if self.token_major:  # whole token rows; each head keeps its slice (no unique(): it would sync the GPU)
            flat = (pos + offs.view(B, 1, 1)).reshape(-1)
            qr = take_qrows(self.data, flat, self.dev)
            deq = self.store0.restore(self.quantizer.dequantize(qr).view(B, H * K, -1), qr, self.mu)
            heads = torch.arange(H, device=self.dev).view(1, H, 1, 1, 1).expand(B, H, K, 1, self.d)
            return torch.gather(deq.view(B, H, K, self.H, self.d), 3, heads).squeeze(3)
        head_off = torch.arange(H, device=idx_dev).view(1, H, 1) * P.view(B, 1, 1)
        flat = (pos + head_off + offs.view(B, 1, 1)).reshape(-1)
        qr = take_qrows(self.data, flat, self.dev)
        return self.store0.restore(self.quantizer.dequantize(qr).view(B, H, K, self.d), qr, self.mu)

    @property
    def token_rows(self) -> bool:
        """The kernel gather dequantizes whole HIGGS token rows, once per distinct selected token (union_rows)."""
        return self.kind not in ("native", "PlainQuantizer", "FP8Quantizer")

    def fetch(self, pos: torch.Tensor, out: torch.Tensor, table: torch.Tensor | None, n: torch.Tensor,
              union: tuple | None = None) -> None:
        """Kernel gather: out (B*H, K, d) = rows at pos (B*H, K) (prompt positions), dequantized, post-RoPE when
        `table` is given; only each row's first n[bh] (B*H,) positions. Pinned host rows are read zero-copy; nothing
        synchronises the host. union: union_rows(pos, n, H) when the caller has it (keys and values of one step
        select the same tokens)."""
        from shadowkv_lab.kernels.fetch import gather_rows, higgs_rows, union_rows

        H, d = self.H, self.d
        if self.kind == "native":
            s = self.data.stride()
            gather_rows(self.data, (s[0], s[1], s[2]), H, pos, out, n=n, rope_table=table, rope_pos=pos)
            return
        rows = self.data.rows
        if not self.token_rows:  # plain or FP8 rows, read as they are
            src = rows["data"]
            strides = (0, d if self.token_major else 0, src.stride(0))
            gather_rows(src, strides, H, pos + self.base_bh.unsqueeze(1), out, n=n, fmt=1 if self.kind == "FP8Quantizer" else 0,
                        rope_table=table, rope_pos=pos)
            return
        # HIGGS token rows: dequantize each distinct selected token of a row once, then hand each head its slice
        from shadowkv_lab.quant import load_grid

        uniq, n_u, inv = union if union is not None else union_rows(pos, n, H)  # (B, H*K), (B,), (B*H, K)
        uniq = uniq + self.offs_dev.unsqueeze(1)
        C = H * d
        buf = torch.empty(self.B, uniq.shape[1], C, dtype=out.dtype, device=out.device)
        codes, scales = rows["codes"], rows["scales"]
        q = self.quantizer
        higgs_rows(codes.unsqueeze(0).expand(self.B, -1, -1), scales.unsqueeze(0).expand(self.B, -1, -1),
                   load_grid(q.p, q.n, out.device), q.group, uniq, n_u, buf)
        if self.store0.offset is not None:  # add the key offset back before RoPE, as RowStore.restore does
            flag = None
            if self.store0.offset.selective:
                flag = take_rows(rows[FLAG], uniq.reshape(-1), out.device).view(uniq.shape).bool()
            buf = self.store0.offset.restore(buf, flag, self.mu)
        gather_rows(buf, (buf.stride(0), d, C), H, inv, out, n=n, rope_table=table, rope_pos=pos)


# ---------------------------------------------------------------------------------------------- layer groups
class ExactGroup:
    """Full attention (or the short-prompt fallback) of B rows of one layer."""

    def __init__(self, layers: list[ExactLayer], state: RowState, capacity: int, backend: str):
        self.layers, self.state = layers, state
        self.ctx = layers[0].ctx
        self.backend = _resolve_backend(layers, backend)
        self.k, lens = _adopt(layers, "k", block=True)  # (B, H, Lmax rounded up to BLOCK, d)
        self.v, _ = _adopt(layers, "v", block=True)
        self.H = self.k.shape[1]
        self.prompt_valid = _lengths_mask(lens, self.k.shape[2], self.k.device)
        self.prompt_bh = _per_head(torch.tensor(lens, device=self.k.device), self.H)
        self.gen = _GenStack([lay.gen for lay in layers], state, capacity)

    def step(self, q, k_pre, k_post, v, record=None):
        """q: (B, Hq, d); k_pre, k_post, v: (B, H, d) -> (B, Hq, d). Exact attention has nothing to record."""
        B, _, d = q.shape
        H = self.H
        self.gen.write(k_post, v)
        if self.backend == "triton":
            from shadowkv_lab.kernels.attention import decode_attention

            BH, N = B * H, self.k.shape[2]
            segs = [(self.k.view(BH, N, d), self.v.view(BH, N, d), self.prompt_bh), self.gen.segment()]
            return decode_attention(q.reshape(BH, -1, d), segs, self.ctx.scaling).view(B, -1, d)
        gk, gv, gvalid = self.gen.view()
        out = attend_masked(q.view(B, H, -1, d), [(self.k, self.v, self.prompt_valid), (gk, gv, gvalid)], self.ctx.scaling)
        return out.view(B, -1, d)

    def retire(self, slots: torch.Tensor) -> None:
        """Rows `slots` (stack indices, device long) have finished: their prompt segment becomes empty in place, so the
        kernels read nothing of it while the stack (and a captured graph) stays as it is (BatchPlan.set_active)."""
        self.prompt_bh.view(-1, self.H).index_fill_(0, slots, 0)

    def unstack(self) -> None:
        self.gen.unstack()


class SparseGroup:
    """ShadowKV-family layers of B rows of one method and one layer (SparseLayer's decode, batched).

    Selection is one rule for both kinds: score every candidate unit with the softmax-max (or mean-dot) rule and keep
    the top units. Landmark selection: a unit is a chunk, scored by its landmark. Oracle selection (the analysis
    upper bound): a unit is a token of a candidate chunk, scored by its exact key."""

    def __init__(self, layers: list[SparseLayer], state: RowState, capacity: int, backend: str):
        l0 = layers[0]
        self.layers, self.cfg, self.ctx, self.state = layers, l0.cfg, l0.ctx, state
        self.backend = _resolve_backend(layers, backend)
        if self.backend == "triton":  # the top-k keys in one kernel (the same keys as rank_keys)
            from shadowkv_lab.kernels.scoring import rank_keys_fused as keys
        else:
            keys = rank_keys
        self.rank_keys = keys
        self.H, self.G, self.d, self.c = l0.H, l0.G, l0.d, l0.c
        dev = self.ctx.compute_device
        B, H = len(layers), self.H
        self.oracle = self.cfg.selection == "oracle"
        if self.oracle:
            self.unit = 1
            cand_pos = [chunk_positions(lay.cand_ids, self.c) for lay in layers]  # (H, M*c) each
            keys = [torch.gather(lay.exact_k, 1, p.unsqueeze(-1).expand(-1, -1, self.d)) for lay, p in zip(layers, cand_pos)]
            self.lm, Ms = _stack(keys, dim=1, block=True)  # (B, H, Mpad, d): exact keys of every candidate token
            self.cand, _ = _stack(cand_pos, dim=1, block=True)
            self.sel_len = [min(lay.budget, lay.M * self.c) for lay in layers]
            self.rule, self.bf16 = "softmax_max", False
        else:
            self.unit = self.c
            if self.cfg.landmark_scoring == "codes" and self.backend == "triton":
                self.lm, Ms = None, self._adopt_codes(layers)  # scored through the query's table, never dequantized
            else:
                # Landmarks are dequantized once here: the reference dequantizes the same codes at every step. With
                # landmark_scoring="codes" (the torch backend: the readable version of the table's math) they stay
                # fp32, unrounded (SparseLayer._landmarks).
                self.lm, Ms = _stack([lay._landmarks() for lay in layers], dim=1, block=True)  # (B, H, Mpad, d)
            self.cand, _ = _stack([lay.cand_ids for lay in layers], dim=1, block=True)  # (B, H, Mpad)
            self.sel_len = [min(lay.budget // self.c, lay.M) * self.c for lay in layers]
            self.rule = self.cfg.scoring
            self.bf16 = self.cfg.scoring == "softmax_max" and self.cfg.score_precision == "bf16"
        self.unit_offsets = torch.arange(self.unit, device=dev)
        self.lm_valid = _lengths_mask(Ms, self.cand.shape[2], dev)  # (B, Mpad)
        self.k_sel = max(self.sel_len)
        self.sel_valid = _lengths_mask(self.sel_len, round_up(self.k_sel), dev)
        # Outliers + local window: resident, exact; each row's tokens first (its own order), padding after.
        self.res_k, lens = _adopt_cat(layers, ("out_k", "local_k"))
        self.res_v, _ = _adopt_cat(layers, ("out_v", "local_v"))
        self.res_valid = _lengths_mask(lens, self.res_k.shape[2], dev)
        self.rank = l0.rank
        if self.rank > 0:
            self.U, _ = _adopt(layers, "U", dim=0)  # (B, Pmax, r)
            self.SV = torch.stack([lay.SV for lay in layers])  # (B, H, r, d)
            self.keys = None
        else:
            self.keys = _StackedRows([lay.keys for lay in layers])
        self.values = _StackedRows([lay.values for lay in layers])
        self.gen = _GenStack([lay.gen for lay in layers], state, capacity)
        # Rows built for recording hold their exact prompt K/V: one stack each (the rows keep views, nothing doubles),
        # so a recorded step reads them in one copy instead of padding every row's again (record.rows_layout).
        self.exact = None
        if all(lay.exact_k is not None and lay.exact_v is not None for lay in layers):
            self.exact = (_adopt(layers, "exact_k")[0], _adopt(layers, "exact_v")[0])
        self._layout: tuple[tuple, RowsLayout] | None = None
        self.b_idx = torch.arange(B, device=dev).view(-1, 1, 1)
        self.last_pos = torch.zeros(B, H, round_up(self.k_sel), dtype=torch.long, device=dev)
        if self.backend == "triton":
            from shadowkv_lab.kernels.common import rope_table

            per_head = lambda n: _per_head(torch.tensor(n, device=dev), H)  # noqa: E731
            self.m_bh, self.sel_bh, self.res_bh = per_head(Ms), per_head(self.sel_len), per_head(lens)
            self.K = self.k_sel  # selected entries per row, unpadded: the kernels mask by sel_bh
            self.k_buf = self.res_k.new_empty(B * H, self.K, self.d)
            self.v_buf = self.res_k.new_empty(B * H, self.K, self.d)
            self.table = rope_table(self.ctx.rope, max(lay.L for lay in layers), self.d, self.res_k.dtype, dev)
            if self.rank > 0:
                self.SV_bh = self.SV.view(B * H, self.rank, self.d).contiguous()

    def _adopt_codes(self, layers: list[SparseLayer]) -> list[int]:
        """landmark_scoring="codes" on the kernels: stack every row's HIGGS landmark codes into self.codes
        (B*H, Mpad, d/p) uint8 and their scales into self.scales (B*H, Mpad) (stored dtype, fp32 by default), zero
        padded to Mpad = the longest row's M rounded up to BLOCK (lengths m_bh mask the padding: never read). Each
        row's per-head QuantizedTensors are left holding views of the stack, so the codes are not doubled and the
        rows' memory reports do not change. Also the grid (n, p) and the sign diagonal (d,) or None that the query's
        table needs. -> each row's M."""
        B, H = len(layers), self.H
        for lay in layers:
            if any(set(t.rows) != {"codes", "scales"} or t.parts or t.consts for t in lay.landmarks):
                raise ValueError("landmark_scoring='codes' needs plain HIGGS landmarks (codes and scales per row)")
        codes, Ms = _stack([torch.stack([t.rows["codes"] for t in lay.landmarks]) for lay in layers], dim=1, block=True)
        scales, _ = _stack([torch.stack([t.rows["scales"][:, 0] for t in lay.landmarks]) for lay in layers], dim=1,
                           block=True)  # (B, H, Mpad): one scale per landmark (group = d)
        for b, (lay, m) in enumerate(zip(layers, Ms)):
            lay.landmarks = [dataclasses.replace(t, rows={"codes": codes[b, h, :m], "scales": scales[b, h, :m, None]})
                             for h, t in enumerate(lay.landmarks)]
        self.codes, self.scales = codes.view(B * H, -1, codes.shape[-1]), scales.view(B * H, -1)
        from shadowkv_lab.quant import load_grid

        q = layers[0].landmark_q
        self.grid = load_grid(q.p, q.n, self.ctx.compute_device)
        self.signs = q._sign_vec(self.ctx.compute_device) if q.signs else None
        return Ms

    # -------------------------------------------------------------- the four pieces, per backend
    def scores(self, qg: torch.Tensor) -> torch.Tensor:
        """qg (B, H, G, d) -> fp32 scores of every candidate unit (B*H, Mpad) (triton) or (B, H, Mpad) (torch);
        padding ranks below every real candidate (-inf; a real probability may underflow to 0 but never below).
        landmark_scoring="codes": the triton backend scores the HIGGS codes through each query's lookup table
        (kernels/scoring_lut.py), the torch backend the same q . l on fp32 dequantized landmarks."""
        B, H, G, d = qg.shape
        if self.backend == "triton" and self.lm is None:
            from shadowkv_lab.kernels.scoring_lut import higgs_lut, landmark_scores_lut

            lut = higgs_lut(qg.reshape(B * H, G, d), self.grid, self.rule, self.signs)  # (B*H, G or 1, d/p, n)
            return landmark_scores_lut(self.codes, self.scales, lut, self.ctx.scaling, self.rule, bf16_probs=self.bf16,
                                       lengths=self.m_bh)
        if self.backend == "triton":
            from shadowkv_lab.kernels.scoring import FMT_NATIVE, Landmarks, landmark_scores

            lm = Landmarks(FMT_NATIVE, self.lm.view(B * H, -1, d), dtype=self.lm.dtype)
            return landmark_scores(lm, qg.reshape(B * H, G, d), self.ctx.scaling, self.rule, bf16_probs=self.bf16,
                                   lengths=self.m_bh)
        if self.rule == "softmax_max":
            logits = block_scores(qg, self.lm) * self.ctx.scaling  # (B, H, G, Mpad)
            p = softmax_invariant(logits.masked_fill(~self.lm_valid[:, None, None, :], NEG_INF))
            if self.bf16:
                p = p.to(torch.bfloat16)
            score = p.max(dim=2).values.float()
        else:  # serving rule: unscaled dot product with the group-mean query
            score = block_scores(qg.float().mean(dim=2, keepdim=True), self.lm).squeeze(2)
        return score.masked_fill(~self.lm_valid[:, None, :], NEG_INF)

    def select(self, qg: torch.Tensor) -> torch.Tensor:
        """qg (B, H, G, d) -> selected token positions (B, H, K): K = k_sel (triton) or k_sel rounded up to BLOCK
        (torch, padded with zeros); entries past a row's sel_len are masked in the attention."""
        B, H = qg.shape[:2]
        if self.k_sel == 0:
            return self.cand[:, :, :0]
        score = self.scores(qg).view(B, H, -1)
        top = topk_indices(score, self.k_sel // self.unit, bf16_scores=self.bf16, keys=self.rank_keys)
        pos = chunk_positions(torch.gather(self.cand, 2, top), self.unit, self.unit_offsets)
        return pos if self.backend == "triton" else _pad_end(pos, 2, round_up(self.k_sel))

    def fetch(self, pos: torch.Tensor):
        """pos (B, H, K) -> post-RoPE keys and values of the selected tokens: (B*H, K, d) step buffers (triton) or
        (B, H, K, d) tensors (torch)."""
        B, H, K = pos.shape
        d = self.d
        if self.backend == "triton":
            from shadowkv_lab.kernels.fetch import lowrank_rows, union_rows

            pos_bh = pos.reshape(B * H, K)
            n = self.sel_bh  # a row's own selection (padding past it and retired rows: nothing is read)
            union = None
            if self.rank > 0:
                lowrank_rows(self.U, self.SV_bh, pos_bh, self.k_buf, self.table, n=n)
            else:
                if self.keys.token_rows and self.values.token_rows:  # the same tokens: their union once, not twice
                    union = union_rows(pos_bh, n, H)
                self.keys.fetch(pos_bh, self.k_buf, self.table, n, union)
            self.values.fetch(pos_bh, self.v_buf, None, n, union)
            return self.k_buf, self.v_buf
        if self.rank > 0:
            k_pre_sel = torch.matmul(self.U[self.b_idx, pos], self.SV)  # (B, H, K, r) @ (B, H, r, d)
        else:
            k_pre_sel = self.keys.gather(pos)
        sel_k = self.ctx.rope(k_pre_sel.reshape(B * H, K, d), pos.reshape(B * H, K)).view(B, H, K, d)
        return sel_k, self.values.gather(pos)

    def attend(self, qg: torch.Tensor, sel_k: torch.Tensor, sel_v: torch.Tensor) -> torch.Tensor:
        """Exact attention over resident + selected + generated entries -> (B, H, G, d)."""
        B, H, G, d = qg.shape
        if self.backend == "triton":
            from shadowkv_lab.kernels.attention import decode_attention

            BH, N = B * H, self.res_k.shape[2]
            segs = [(self.res_k.view(BH, N, d), self.res_v.view(BH, N, d), self.res_bh)]
            if self.K:
                segs.append((sel_k, sel_v, self.sel_bh))
            segs.append(self.gen.segment())
            return decode_attention(qg.reshape(BH, G, d), segs, self.ctx.scaling).view(B, H, G, d)
        gk, gv, gvalid = self.gen.view()
        segs = [(self.res_k, self.res_v, self.res_valid), (sel_k, sel_v, self.sel_valid), (gk, gv, gvalid)]
        return attend_masked(qg, segs, self.ctx.scaling)

    def step(self, q, k_pre, k_post, v, record=None):
        """q: (B, Hq, d); k_pre, k_post, v: (B, H, d) -> (B, Hq, d).
        record: [(slot, recorder)] of active rows whose attention is recorded; each recorder sees its row's slice."""
        B, H, d = q.shape[0], self.H, self.d
        self.gen.write(k_post, v)
        qg = q.view(B, H, self.G, d)
        pos = self.select(qg)  # (B, H, K)
        K = pos.shape[2]
        if K == 0:  # a budget below one chunk selects nothing
            sel_k = sel_v = self.res_k[:, :, :0]
        else:
            sel_k, sel_v = self.fetch(pos)
            last = self.last_pos[:, :, :K]
            torch.where(self.state.active[:, None, None], pos, last, out=last)  # in place: one kernel
        out = self.attend(qg, sel_k, sel_v)
        if record:  # every recorded row of the group in one batched computation (a loop over rows cost ~40 ops each)
            slots = [b for b, _ in record]
            idx = torch.tensor(slots, device=qg.device)
            record_rows([rec for _, rec in record], [self.layers[b] for b in slots], qg[idx], pos[idx],
                        [self.sel_len[b] for b in slots], out[idx], self.gen.k[idx], self.gen.v[idx],
                        [self.state.lens[b] + 1 for b in slots], self._record_layout(slots, idx))
        return out.view(B, -1, d)

    def _record_layout(self, slots: list[int], idx: torch.Tensor) -> RowsLayout | None:
        """The recorded rows' step-invariant inputs, built once per set of recorded rows (it shrinks as rows finish);
        None (record_rows pads them itself) where the group holds no stack of exact K/V."""
        if self.exact is None:
            return None
        key = tuple(slots)
        if self._layout is None or self._layout[0] != key:
            rows = None if key == tuple(range(len(slots))) else idx
            self._layout = (key, rows_layout([self.layers[b] for b in slots], self.exact, rows))
        return self._layout[1]

    def retire(self, slots: torch.Tensor) -> None:
        """Rows `slots` have finished: no landmark is scored, no row fetched and no resident entry attended for them
        any more (their lengths are zeroed in place; ExactGroup.retire)."""
        for t in (self.m_bh, self.sel_bh, self.res_bh):
            t.view(-1, self.H).index_fill_(0, slots, 0)

    def unstack(self) -> None:
        self.gen.unstack()
        elt = self.res_k.element_size()
        for b, (lay, n) in enumerate(zip(self.layers, self.sel_len)):
            lay.step_buffer_bytes = max(lay.step_buffer_bytes, 2 * self.H * n * self.d * elt)
            lay.last_selection = self.last_pos[b, :, :n].clone()


class RowGroup:
    """Rows (global indices) of one method stacked across all layers, with their shared RowState."""

    def __init__(self, rows: list[int], caches, capacity: int, backend: str):
        self.rows = rows
        self.caches = [caches[r] for r in rows]
        lay0 = self.caches[0].layers[0]
        H = lay0.H if isinstance(lay0, SparseLayer) else lay0.k.shape[0]
        dev = lay0.ctx.compute_device
        self.state = RowState([c.layers[0].gen.length for c in self.caches], H, dev)
        self.layers = [
            (ExactGroup if isinstance(ls[0], ExactLayer) else SparseGroup)(ls, self.state, capacity, backend)
            for ls in ([c.layers[i] for c in self.caches] for i in range(len(self.caches[0].layers)))
        ]
        self.backends = sorted({g.backend for g in self.layers})
        self.retired: set[int] = set()  # stack slots of finished rows (kernels only: see retire)

    def retire(self, slots: list[int]) -> None:
        """Finished rows stay in the stack, computing nothing: every layer zeroes their segment lengths in place, so a
        captured graph stays valid and the kernels skip them (SparseGroup.retire, ExactGroup.retire)."""
        new = sorted(set(slots) - self.retired)
        if not new:
            return
        idx = torch.tensor(new, device=self.state.t.device)
        for g in self.layers:
            g.retire(idx)
        self.retired.update(new)

    def recorders(self, layer_idx: int, active: set) -> list:
        """[(slot, recorder)] of the active rows that record attention, positioned at this layer and step."""
        out = []
        for s, (r, c) in enumerate(zip(self.rows, self.caches)):
            if r in active and c.recorder is not None:
                c.recorder.layer, c.recorder.step = layer_idx, c.generated
                out.append((s, c.recorder))
        return out

    @property
    def records(self) -> bool:
        return any(c.recorder is not None for c in self.caches)

    def unstack(self) -> None:
        for g in self.layers:
            g.unstack()


# ---------------------------------------------------------------------------------------------- the plan
class BatchPlan:
    """The decode session of `generation.decode`. Rows of one method share a stack (a RowGroup); a row whose stores
    cannot be concatenated with another's (row_alone) has a stack of its own. The model's batch is every stacked row,
    group after group, finished rows included (their outputs are dropped). On the kernels a finished row is retired
    in place (RowGroup.retire: its attention reads nothing of the prompt, so it costs next to nothing) and the stacks
    stay as they are until the decode ends: re-stacking would copy the caches and re-capture the graph. On
    the torch backend, where every stacked row costs its full step, a group is re-stacked without its finished rows
    once half of them have finished. Batch invariance makes both harmless.

    forward(model, ids, pos) runs one decode step; on CUDA with every group on the Triton backend and no recorded row,
    the step is captured once per stack composition in a CUDA graph and replayed (`graphs`)."""

    mode = "decode"

    def __init__(self, caches, max_new_tokens: list[int] | int | None = None, backend: str | None = None,
                 graphs: bool | None = None):
        self.all = caches
        dev = caches[0].layers[0].ctx.compute_device if caches else torch.device("cpu")
        self.backend = backend or default_backend(dev)
        if self.backend not in BACKENDS:
            raise ValueError(f"backend={self.backend!r}: allowed {BACKENDS}")
        caps = max_new_tokens if isinstance(max_new_tokens, list) else [max_new_tokens or 0] * len(caches)
        self.caps = caps
        self.graphs = default_graphs(dev, self.backend) if graphs is None else graphs
        self.groups: list[RowGroup] = []
        self.alone: dict[int, str] = {}
        self.active: list[int] = []
        self.batch_rows: list[int] = []
        self._graph = None

    def _capacity(self, rows) -> int:
        """Generated tokens a stack must hold: each row's tokens so far plus what it may still generate."""
        return max(self.all[r].layers[0].gen.length + max(self.caps[r], 1) for r in rows)

    def set_active(self, active: list[int]) -> None:
        """Rows still generating. Groups whose live rows are half or fewer are re-stacked; new rows get stacks."""
        self.active = list(active)
        act = set(active)
        kept, changed = [], False
        for g in self.groups:
            live = [r for r in g.rows if r in act]
            if g.backends == ["triton"]:  # a wholly finished group too: dropping it would re-capture the graph
                g.retire([s for s, r in enumerate(g.rows) if r not in act])
                kept.append(g)
            elif len(live) * 2 <= len(g.rows) or not live:
                g.unstack()
                changed = True
                if live:
                    kept.append(RowGroup(live, self.all, self._capacity(live), self.backend))
            else:
                kept.append(g)
        grouped = {r for g in kept for r in g.rows}
        new: dict[tuple, list[int]] = {}
        for r in active:
            if r in grouped:
                continue
            why = row_alone(self.all[r])
            if why is not None:
                self.alone[r] = why
            new.setdefault((group_key(self.all[r]), r if why is not None else None), []).append(r)
        for rows in new.values():
            kept.append(RowGroup(rows, self.all, self._capacity(rows), self.backend))
            changed = True
        self.groups = kept
        self.batch_rows = [r for g in self.groups for r in g.rows]
        starts = list(itertools.accumulate([len(g.rows) for g in self.groups], initial=0))
        self._slices = list(zip(starts[:-1], starts[1:]))
        for g in self.groups:
            g.state.set_active([r in act for r in g.rows])
        if changed:
            self._graph = None

    def decode_layer(self, layer_idx: int, q, k_pre, k_post, v) -> torch.Tensor:
        """q: (B_batch, Hq, d); k_pre, k_post, v: (B_batch, H, d) -> (B_batch, Hq, d), rows in batch_rows order."""
        act = set(self.active)
        outs = []
        for g, (s, e) in zip(self.groups, self._slices):
            record = g.recorders(layer_idx, act) if g.records else None
            outs.append(g.layers[layer_idx].step(q[s:e], k_pre[s:e], k_post[s:e], v[s:e], record))
        return outs[0] if len(outs) == 1 else torch.cat(outs)

    def advance(self) -> None:
        """After a step: every active row holds one more generated token."""
        act = set(self.active)
        for g in self.groups:
            g.state.advance([r in act for r in g.rows])

    def forward(self, model, ids: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """One decode step of batch_rows: ids, pos (B_batch, 1) -> logits (B_batch, vocab) (valid until the next
        call). Captured in a CUDA graph when `graphs` and no row records; the eager run that precedes each capture
        (it also compiles the kernels) is this step's result."""
        from shadowkv_lab.attention import decode_forward, session

        use_graph = self.graphs and not any(g.records for g in self.groups) and all(
            g.backends == ["triton"] for g in self.groups)
        if not use_graph:
            with session(self):
                return decode_forward(model, ids, pos)
        if self._graph is not None:
            self._ids.copy_(ids)
            self._pos.copy_(pos)
            self._graph.replay()
            return self._logits
        self._ids, self._pos = ids.clone(), pos.clone()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), session(self):
            logits = decode_forward(model, self._ids, self._pos)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), session(self):
            self._logits = decode_forward(model, self._ids, self._pos)
        self._graph = graph
        return logits

    def close(self) -> None:
        """Hand every row its generated tokens back (the rows stay valid for the per-row path and reports)."""
        self._graph = None
        for g in self.groups:
            g.unstack()
        self.groups = []

"""Batched decode step: many sequences, one set of tensor ops per layer.

`SparseLayer.decode` / `ExactLayer.decode` are the per-row reference. Run one row at a time, a decode step costs
O(rows x layers) small kernel launches and Python calls, which is what made the experiment runner barely faster
than a naive loop. Here the rows of one method are *stacked*: every per-layer tensor is padded to the longest row
and stacked on a new batch dimension, with masks for the padding, so a step costs O(layers) launches whatever the
number of rows. The math is the reference's (fp32 scores, per-query-head softmax, max over the GQA group, top-k,
fp32 attention); only padding (masked to -inf / 0) and reduction order differ.

Every production row runs this step, recorded or not (the recorder sees its row's slice), and the step is
batch-invariant (BLOCK below): a row's tokens do not depend on its batch mates, the padding or the wave size. A row
whose quantized stores have per-tensor constants or nested parts cannot share a stack and runs in a stack of its
own (B = 1 of the same step). On CUDA a row alone in its group runs the per-row layer step when the Triton kernels
cover it: the kernels are single-sequence kernels.

Stacking moves each row's tensors into the stack and leaves the row holding views of it, so memory is not doubled
and each row's memory report is unchanged; `unstack` hands the generated tokens back to the rows.

Shapes: B stacked rows, H KV heads, G query heads per KV head, d head dim, c chunk size; `*max` = longest row.
"""

from __future__ import annotations

import dataclasses
import itertools

import torch

from .layer import ExactLayer, SparseLayer, chunk_positions, topk_indices
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
    out = torch.zeros([len(xs)] + shape, dtype=xs[0].dtype, device=xs[0].device, pin_memory=pinned_host(xs[0]))
    for b, x in enumerate(xs):
        out[b].narrow(dim, 0, x.shape[dim]).copy_(x)
    return out, lens


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


def _kernels_on(cache) -> bool:
    """True when the Triton decode kernels would run some layer of this row (CUDA, or the interpreter)."""
    from shadowkv_lab.kernels import dispatch

    return any(isinstance(lay, SparseLayer) and dispatch.enabled(lay) for lay in cache.layers)


def group_key(cache) -> tuple:
    """Rows with equal keys stack together: same method and, per layer, the same layer kind."""
    return (cache.config, tuple(type(lay).__name__ for lay in cache.layers))


# ---------------------------------------------------------------------------------------------- pieces
class _GenStack:
    """Generated-token K/V of B rows, (B, H, cap, d), with per-row lengths; grows by doubling. The capacity is a
    multiple of BLOCK and the buffer starts zeroed, so the padded view holds finite values only (0 x NaN is NaN)."""

    def __init__(self, bufs):
        self.bufs = bufs
        self.lens = [b.length for b in bufs]
        cap = round_up(max(max(self.lens) * 2, BLOCK))
        first = bufs[0].k
        B, (H, _, d) = len(bufs), first.shape
        self.k = first.new_zeros(B, H, cap, d)
        self.v = first.new_zeros(B, H, cap, d)
        for i, b in enumerate(bufs):
            gk, gv = b.view()
            self.k[i, :, : b.length] = gk
            self.v[i, :, : b.length] = gv
        self.rows = torch.arange(B, device=first.device)
        self.len_t = torch.tensor(self.lens, device=first.device)

    def append(self, k: torch.Tensor, v: torch.Tensor, active: list[bool], active_t: torch.Tensor) -> None:
        """k, v: (B, H, d); only active rows grow (inactive rows write past their length, never read)."""
        if max(self.lens) + 1 > self.k.shape[2]:
            self.k = torch.cat([self.k, torch.zeros_like(self.k)], dim=2)
            self.v = torch.cat([self.v, torch.zeros_like(self.v)], dim=2)
        self.k[self.rows, :, self.len_t] = k
        self.v[self.rows, :, self.len_t] = v
        self.len_t = self.len_t + active_t
        self.lens = [n + a for n, a in zip(self.lens, active)]

    def view(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(k, v (B, H, N, d), valid (B, N)), N = the longest row rounded up to a multiple of BLOCK."""
        n = round_up(max(self.lens))
        return self.k[:, :, :n], self.v[:, :, :n], torch.arange(n, device=self.k.device).unsqueeze(0) < self.len_t.unsqueeze(1)

    def unstack(self) -> None:
        for i, b in enumerate(self.bufs):
            b.k, b.v, b.length = self.k[i], self.v[i], self.lens[i]


class _StackedRows:
    """RowStores of B rows as one store; gather(positions (B, H, K)) -> (B, H, K, d) on the compute device."""

    def __init__(self, stores: list[RowStore]):
        s0 = stores[0]
        self.H, self.d, self.dtype, self.home, self.dev = s0.H, s0.d, s0.dtype, s0.home, s0.compute_device
        self.quantizer, self.token_major = s0.quantizer, s0.token_major
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
        rows = {k: torch.cat([s.data.rows[k] for s in stores]) for k in keys}
        if pinned_host(s0.row_tensor):
            rows = {k: v.pin_memory() for k, v in rows.items()}  # zero-copy gathers need pinned rows
        self.data = dataclasses.replace(s0.data, shape=(sum(per_row), s0.data.shape[1]), rows=rows)
        for s, o, n in zip(stores, offs, per_row):
            s.data = dataclasses.replace(s.data, rows={k: v[o : o + n] for k, v in rows.items()})
        self.zc = zero_copy(rows[keys[0]], self.dev)
        idx_home = self.dev if self.zc else self.home  # where the row indices are computed
        self.offs = torch.tensor(offs, device=idx_home)
        self.P = torch.tensor([s.P for s in stores], device=idx_home)

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


# ---------------------------------------------------------------------------------------------- layer groups
class ExactGroup:
    """Full attention (or the short-prompt fallback) of B rows of one layer."""

    def __init__(self, layers: list[ExactLayer]):
        self.layers = layers
        self.ctx = layers[0].ctx
        self.k, lens = _adopt(layers, "k", block=True)  # (B, H, Lmax rounded up to BLOCK, d)
        self.v, _ = _adopt(layers, "v", block=True)
        self.prompt_valid = _lengths_mask(lens, self.k.shape[2], self.k.device)
        self.gen = _GenStack([lay.gen for lay in layers])

    def step(self, q, k_pre, k_post, v, active, active_t, record=None):
        """q: (B, Hq, d); k_pre, k_post, v: (B, H, d) -> (B, Hq, d). Exact attention has nothing to record."""
        B, _, d = q.shape
        H = self.k.shape[1]
        self.gen.append(k_post, v, active, active_t)
        gk, gv, gvalid = self.gen.view()
        out = attend_masked(q.view(B, H, -1, d), [(self.k, self.v, self.prompt_valid), (gk, gv, gvalid)], self.ctx.scaling)
        return out.view(B, -1, d)

    def unstack(self) -> None:
        self.gen.unstack()


class SparseGroup:
    """ShadowKV-family layers of B rows of one method and one layer (SparseLayer's decode, batched)."""

    def __init__(self, layers: list[SparseLayer]):
        l0 = layers[0]
        self.layers, self.cfg, self.ctx = layers, l0.cfg, l0.ctx
        self.H, self.G, self.d, self.c = l0.H, l0.G, l0.d, l0.c
        dev = self.ctx.compute_device
        # Landmarks are dequantized once here: the reference dequantizes the same codes at every step.
        self.lm, Ms = _stack([lay._landmarks() for lay in layers], dim=1, block=True)  # (B, H, Mpad, d)
        self.lm_valid = _lengths_mask(Ms, self.lm.shape[2], dev)  # (B, Mpad)
        self.cand, _ = _stack([lay.cand_ids for lay in layers], dim=1, block=True)  # (B, H, Mpad)
        self.oracle = self.cfg.selection == "oracle"
        if self.oracle:  # token-level top-k over the exact keys of every candidate (analysis upper bound)
            self.sel_len = [min(lay.budget, lay.M * self.c) for lay in layers]
            self.exact_k, _ = _adopt(layers, "exact_k")  # (B, H, Pmax, d)
            self.cand_valid = self.lm_valid.repeat_interleave(self.c, dim=1)  # (B, Mpad*c), a multiple of BLOCK
        else:
            self.sel_len = [min(lay.budget // self.c, lay.M) * self.c for lay in layers]
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
        self.gen = _GenStack([lay.gen for lay in layers])
        self.b_idx = torch.arange(len(layers), device=dev).view(-1, 1, 1)
        self.last_pos = None

    def select(self, qg: torch.Tensor) -> torch.Tensor:
        """qg: (B, H, G, d) -> selected token positions (B, H, k_sel rounded up to BLOCK); entries past a row's
        sel_len are masked (sel_valid). Scores and softmax are batch-invariant (block_scores, softmax_invariant)."""
        if self.k_sel == 0:
            return self.cand[:, :, :0]
        if self.oracle:
            pos = chunk_positions(self.cand, self.c)  # (B, H, Mpad*c)
            keys = torch.gather(self.exact_k, 2, pos.unsqueeze(-1).expand(-1, -1, -1, self.d))
            logits = block_scores(qg, keys) * self.ctx.scaling
            p = softmax_invariant(logits.masked_fill(~self.cand_valid[:, None, None, :], NEG_INF))
            score = p.max(dim=2).values.masked_fill(~self.cand_valid[:, None, :], NEG_INF)
            return _pad_end(torch.gather(pos, 2, topk_indices(score, self.k_sel)), 2, round_up(self.k_sel))
        if self.cfg.scoring == "softmax_max":
            logits = block_scores(qg, self.lm) * self.ctx.scaling  # (B, H, G, Mpad)
            p = softmax_invariant(logits.masked_fill(~self.lm_valid[:, None, None, :], NEG_INF))
            if self.cfg.score_precision == "bf16":
                p = p.to(torch.bfloat16)
            score = p.max(dim=2).values.float()
        else:  # serving rule: unscaled dot product with the group-mean query
            score = block_scores(qg.float().mean(dim=2, keepdim=True), self.lm).squeeze(2)
        # Padding ranks below every real candidate (a real probability may underflow to 0 but never below).
        score = score.masked_fill(~self.lm_valid[:, None, :], NEG_INF)
        top = topk_indices(score, self.k_sel // self.c)  # (B, H, k_sel/c)
        return _pad_end(chunk_positions(torch.gather(self.cand, 2, top), self.c), 2, round_up(self.k_sel))

    def step(self, q, k_pre, k_post, v, active, active_t, record=None):
        """q: (B, Hq, d); k_pre, k_post, v: (B, H, d) -> (B, Hq, d).
        record: [(slot, recorder)] of active rows whose attention is recorded; each recorder sees its row's slice."""
        B, H, d = q.shape[0], self.H, self.d
        self.gen.append(k_post, v, active, active_t)
        qg = q.view(B, H, self.G, d)
        pos = self.select(qg)  # (B, H, K)
        K = pos.shape[2]
        if K == 0:  # a budget below one chunk selects nothing
            sel_k = sel_v = self.res_k[:, :, :0]
        else:
            if self.rank > 0:
                k_pre_sel = torch.matmul(self.U[self.b_idx, pos], self.SV)  # (B, H, K, r) @ (B, H, r, d)
            else:
                k_pre_sel = self.keys.gather(pos)
            sel_k = self.ctx.rope(k_pre_sel.reshape(B * H, K, d), pos.reshape(B * H, K)).view(B, H, K, d)
            sel_v = self.values.gather(pos)
        self.last_pos = pos if self.last_pos is None else torch.where(active_t.bool()[:, None, None], pos, self.last_pos)
        gk, gv, gvalid = self.gen.view()
        segs = [(self.res_k, self.res_v, self.res_valid), (sel_k, sel_v, self.sel_valid), (gk, gv, gvalid)]
        out = attend_masked(qg, segs, self.ctx.scaling)
        for b, rec in record or ():
            n, t = self.sel_len[b], self.gen.lens[b]
            rec.on_step(self.layers[b], qg[b], pos[b, :, :n], out[b], gen=(gk[b, :, :t], gv[b, :, :t]))
        return out.view(B, -1, d)

    def unstack(self) -> None:
        self.gen.unstack()
        elt = self.res_k.element_size()
        for b, (lay, n) in enumerate(zip(self.layers, self.sel_len)):
            lay.step_buffer_bytes = max(lay.step_buffer_bytes, 2 * self.H * n * self.d * elt)
            if self.last_pos is not None:
                lay.last_selection = self.last_pos[b, :, :n]


def _layer_group(layers):
    return ExactGroup(layers) if isinstance(layers[0], ExactLayer) else SparseGroup(layers)


class RowGroup:
    """Rows (global indices) of one method stacked across all layers."""

    def __init__(self, rows: list[int], caches):
        self.rows = rows
        self.caches = [caches[r] for r in rows]
        self.layers = [_layer_group([c.layers[i] for c in self.caches]) for i in range(len(self.caches[0].layers))]

    def recorders(self, layer_idx: int, slots) -> list:
        """[(slot, recorder)] of the given slots whose rows record attention, positioned at this layer and step."""
        out = []
        for s in slots:
            rec = self.caches[s].recorder
            if rec is not None:
                rec.layer, rec.step = layer_idx, self.caches[s].generated
                out.append((s, rec))
        return out

    def unstack(self) -> None:
        for g in self.layers:
            g.unstack()


# ---------------------------------------------------------------------------------------------- the plan
class BatchPlan:
    """The decode session of `generation.decode`: every row runs the stacked step, recorded or not (the recorder sees
    its row's slice). Rows of one method share a stack; a row whose stores cannot be concatenated with another's
    (row_alone) runs in a stack of its own. Only on CUDA does a row alone fall back to the per-row layer step, when
    the Triton kernels cover it. Rows leave when they finish; a group is re-stacked once half of its rows have
    finished, so ragged stopping stops costing work. The step is batch-invariant (BLOCK): re-stacking, batch mates and
    the wave size never change a row's tokens."""

    mode = "decode"

    def __init__(self, caches):
        self.all = caches
        self.groups: list[RowGroup] = []
        self.per_row: dict[int, str] = {}
        self.alone: dict[int, str] = {}
        self.active: list[int] = []

    def set_active(self, active: list[int]) -> None:
        self.active = list(active)
        act = set(active)
        kept = []
        for g in self.groups:
            live = [r for r in g.rows if r in act]
            if len(live) * 2 <= len(g.rows) or not live:
                g.unstack()
                if live:
                    kept.append(RowGroup(live, self.all))
            else:
                kept.append(g)
        grouped = {r for g in kept for r in g.rows}
        new: dict[tuple, list[int]] = {}
        for r in active:
            if r in grouped or r in self.per_row:
                continue
            why = row_alone(self.all[r])
            if why is not None:
                self.alone[r] = why
            new.setdefault((group_key(self.all[r]), r if why is not None else None), []).append(r)
        for rows in new.values():
            if len(rows) == 1 and _kernels_on(self.all[rows[0]]) and self.all[rows[0]].recorder is None:
                self.per_row[rows[0]] = "single row on the Triton kernels"
            else:
                kept.append(RowGroup(rows, self.all))
        self.groups = kept
        pos = {r: j for j, r in enumerate(active)}
        self._maps = []
        for g in self.groups:
            dev = g.layers[0].ctx.compute_device
            slots = [s for s, r in enumerate(g.rows) if r in act]
            flags = [r in act for r in g.rows]
            self._maps.append((
                torch.tensor([pos[g.rows[s]] for s in slots], device=dev),  # positions in the model batch
                torch.tensor(slots, device=dev), flags, torch.tensor(flags, device=dev, dtype=torch.long),
                g.rows == self.active,  # identity: this group is the whole model batch, in order
                slots,
            ))
        self._per_row_active = [(pos[r], r) for r in active if r in self.per_row]

    def decode_layer(self, layer_idx: int, q, k_pre, k_post, v) -> torch.Tensor:
        """q: (B_active, Hq, d); k_pre, k_post, v: (B_active, H, d) -> (B_active, Hq, d)."""
        out = torch.empty_like(q)
        for g, (batch_pos, slots, flags, flags_t, identity, slot_list) in zip(self.groups, self._maps):
            lg = g.layers[layer_idx]
            record = g.recorders(layer_idx, slot_list)
            if identity:  # the common case: one group, every row active, same order
                return lg.step(q, k_pre, k_post, v, flags, flags_t, record)
            n = len(g.rows)

            def scatter(x):
                y = x.new_zeros((n,) + tuple(x.shape[1:]))
                y[slots] = x[batch_pos]
                return y

            o = lg.step(scatter(q), scatter(k_pre), scatter(k_post), scatter(v), flags, flags_t, record)
            out[batch_pos] = o[slots]
        for j, r in self._per_row_active:
            out[j] = self.all[r].decode_layer(layer_idx, q[j], k_pre[j], k_post[j], v[j])
        return out

    def close(self) -> None:
        """Hand every row its generated tokens back (the rows stay valid for the per-row path and reports)."""
        for g in self.groups:
            g.unstack()
        self.groups = []

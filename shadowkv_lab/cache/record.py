"""Attention-level recording: per decode step, layer and KV head, how the method's selection compares with exact attention.

Our own error-attribution design (the paper publishes none). For query q at step t, layer l, KV head h:
- oracle set: the top-B candidate tokens by exact attention probability (max over the GQA group);
- recall: |selected ∩ oracle| / |oracle|;
- mass: share of the exact attention probability (mean over the group's query heads) that falls on the
  tokens the method attends to (outliers + local + selected + generated);
- err_selection: ||o_sel_exact - o_exact|| / ||o_exact||, where o_sel_exact attends to the method's token set
  with exact keys and values (the error due only to which tokens were chosen);
- err_approx: ||o_method - o_sel_exact|| / ||o_exact|| (the error due only to approximate keys: low rank or
  quantized, plus quantized values).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..selection import topk_indices
from .layer import SparseLayer, attend


class AttentionRecorder:
    """Collects one row per (step, layer, KV head).

    The statistics stay on the compute device until FLUSH_EVERY (step, layer) entries have piled up, then come to the
    host in one copy: reading each value on its own synchronised the GPU five times per head, layer, row and step
    (about 14,000 times a step for 50 recorded rows of the 1.5B)."""

    FLUSH_EVERY = 4096

    def __init__(self):
        self.rows: list[dict] = []
        self.step = 0
        self.layer = 0
        self.row = 0  # batch row / sequence id
        self._pending: list[tuple[tuple[int, int, int, int], torch.Tensor]] = []  # (row, step, layer, budget), (5, H)

    def on_step(self, layer: SparseLayer, qg: torch.Tensor, positions: torch.Tensor, out: torch.Tensor,
                gen: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """One row (the per-row path): qg: (H, G, d) query; positions: (H, k) selected prompt positions; out: (H, G, d)
        the method's output; gen: the generated tokens' (k, v), (H, T, d) each, new token included (default: the
        layer's own buffer)."""
        gk, gv = layer.gen.view() if gen is None else gen
        record_rows([self], [layer], qg[None], positions[None], [positions.shape[1]], out[None], gk[None], gv[None],
                    [gk.shape[1]])

    def _add(self, budget: int, stats: torch.Tensor) -> None:
        self._pending.append(((self.row, self.step, self.layer, budget), stats))
        if len(self._pending) >= self.FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        values = torch.stack([v for _, v in self._pending]).cpu().tolist()  # (n, 5, H): one device-to-host copy
        for (row, step, layer, budget), (recall, mass, err_sel, err_approx, mean_pos) in zip(
                (m for m, _ in self._pending), values):
            for h in range(len(recall)):
                self.rows.append({
                    "row": row, "step": step, "layer": layer, "head": h, "budget": budget, "recall": recall[h],
                    "mass": mass[h], "err_selection": err_sel[h], "err_approx": err_approx[h],
                    "mean_selected_position": mean_pos[h],
                })
        self._pending.clear()

    def frame(self):
        import pandas as pd

        self._flush()
        return pd.DataFrame(self.rows)


@dataclass
class RowsLayout:
    """What record_rows needs of R rows that stays the same from step to step, padded once per set of recorded rows
    (rows_layout): every token axis in position order is [prefix (padded to the longest, Pm), local window (padded,
    Lm)], then the step's generated tokens and one spare column.

    exact_k, exact_v: (B, H, >= Pm, d) exact prompt keys/values, the R rows' own or a group's stack holding them;
    rows: None when the R rows are exact_k's first R, in order, else their indices into it (device long, (R,));
    local_k, local_v: (R, H, Lm, d); out_ids, cand_ids: (R, H, n) token indices of the outliers and of every
    candidate token, each with its mask out_valid, cand_valid (R, 1, n) of the entries that exist (the heads share
    their counts)."""

    prefix: list[int]
    local_lens: list[int]
    exact_k: torch.Tensor
    exact_v: torch.Tensor
    rows: torch.Tensor | None
    local_k: torch.Tensor
    local_v: torch.Tensor
    out_ids: torch.Tensor
    out_valid: torch.Tensor
    cand_ids: torch.Tensor
    cand_valid: torch.Tensor
    cand_lens: list[int]
    lengths: list[int]  # each row's prompt length L

    @property
    def Pm(self) -> int:
        return max(self.prefix)


def rows_layout(layers: list[SparseLayer], stack: tuple[torch.Tensor, torch.Tensor] | None = None,
                rows: torch.Tensor | None = None) -> RowsLayout:
    """The step-invariant part of recording `layers` (RowsLayout). stack: (B, H, P, d) exact keys and values that
    hold these rows' prompts (a group's stack, SparseGroup) with `rows` their indices in it (None: the first R);
    default: the rows' own exact tensors, padded here."""
    from .batched import _lengths_mask, _stack  # batched imports this module

    if any(lay.exact_k is None or lay.exact_v is None for lay in layers):
        raise RuntimeError("recording needs the exact prompt keys/values: build the cache with record=True")
    dev = layers[0].local_k.device

    def padded_ids(parts):  # [(H, n_r)] -> (R, H, max n_r) indices and the (R, 1, max n_r) mask of real entries
        ids, lens = _stack(parts, 1)
        return ids, _lengths_mask(lens, ids.shape[2], dev)[:, None, :]

    if stack is None:
        stack, rows = (_stack([lay.exact_k for lay in layers], 1)[0], _stack([lay.exact_v for lay in layers], 1)[0]), None
    out_ids, out_valid = padded_ids([lay.out_pos for lay in layers])
    cands = [lay._chunk_positions(lay.cand_ids) for lay in layers]
    cand_ids, cand_valid = padded_ids(cands)
    P = [lay.prefix for lay in layers]
    return RowsLayout(prefix=P, local_lens=[lay.local_k.shape[1] for lay in layers], exact_k=stack[0],
                      exact_v=stack[1], rows=rows, local_k=_stack([lay.local_k for lay in layers], 1)[0],
                      local_v=_stack([lay.local_v for lay in layers], 1)[0], out_ids=out_ids, out_valid=out_valid,
                      cand_ids=cand_ids, cand_valid=cand_valid, cand_lens=[c.shape[1] for c in cands],
                      lengths=[lay.L for lay in layers])


def record_rows(recorders: list[AttentionRecorder], layers: list[SparseLayer], qg: torch.Tensor,
                positions: torch.Tensor, sel_lens: list[int], out: torch.Tensor, gen_k: torch.Tensor,
                gen_v: torch.Tensor, gen_lens: list[int], layout: RowsLayout | None = None) -> None:
    """Record one step of R rows in one batched computation (the module docstring defines the statistics).

    qg, out: (R, H, G, d); positions: (R, H, >= max sel_lens), row r's selection in its first sel_lens[r] entries;
    gen_k, gen_v: (R, H, >= max gen_lens, d), row r's generated tokens (new one included) in its first gen_lens[r].
    layout: rows_layout(layers), built once by a caller that records the same rows step after step (default: built
    here). Rows differ in prompt, window and selection lengths, so every token axis is padded and masked (RowsLayout).
    Padding indices point at the spare column, which no row attends and whose probability is zero. Given a layout,
    a step's operations do not grow with R, only its bytes; each row's statistics are the same as computed alone
    (tested)."""
    layout = layout or rows_layout(layers)
    R, H, G, d = qg.shape
    dev = qg.device
    P, Pm, Lm, Tm = layout.prefix, layout.Pm, layout.local_k.shape[2], max(gen_lens)
    N = Pm + Lm + Tm + 1
    spare = N - 1

    def joined(exact, local, gen):  # (R, H, N, d) fp32: prefix, local window, generated tokens, spare column
        x = torch.empty(R, H, N, d, dtype=torch.float32, device=dev)
        src = exact[:R] if layout.rows is None else exact.index_select(0, layout.rows)
        x[:, :, :Pm].copy_(src[:, :, :Pm])
        x[:, :, Pm : Pm + Lm].copy_(local)
        x[:, :, Pm + Lm : N - 1].copy_(gen[:, :, :Tm])
        x[:, :, N - 1].zero_()
        return x

    K = joined(layout.exact_k, layout.local_k, gen_k)  # (R, H, N, d)
    V = joined(layout.exact_v, layout.local_v, gen_v)
    col = torch.arange(N, device=dev)

    def lengths(xs):
        return torch.tensor(xs, device=dev)[:, None]

    valid_prefix = col < lengths(P)
    always = ((col >= Pm) & (col < Pm + lengths(layout.local_lens))) | (
        (col >= Pm + Lm) & (col < Pm + Lm + lengths(gen_lens)))  # local window and generated tokens: always attended
    valid = (valid_prefix | always)[:, None, None, :]  # (R, 1, 1, N)
    scores = torch.matmul(qg.float(), K.transpose(2, 3)) * layers[0].ctx.scaling  # (R, H, G, N)
    p = torch.softmax(scores.masked_fill(~valid, float("-inf")), -1)
    o_exact = torch.matmul(p, V)
    n_sel = lengths(sel_lens)[:, :, None]  # (R, 1, 1)
    k_idx = torch.arange(positions.shape[2], device=dev)
    sel = torch.where(k_idx < n_sel, positions, spare)  # (R, H, k), padding at the spare column
    attended = always[:, None, :].expand(R, H, N).clone()
    attended.scatter_(2, torch.where(layout.out_valid, layout.out_ids, spare), True)
    attended.scatter_(2, sel, True)
    attended[:, :, spare] = False
    is_sel = torch.zeros(R, H, N, dtype=torch.bool, device=dev)
    is_sel.scatter_(2, sel, True)
    is_sel[:, :, spare] = False
    cand = torch.where(layout.cand_valid, layout.cand_ids, spare)  # (R, H, M)
    k_b = [min(n, m) for n, m in zip(sel_lens, layout.cand_lens)]
    cand_score = torch.gather(p.max(dim=2).values, 2, cand)
    cand_score = torch.where(cand == spare, -1.0, cand_score)  # padding ranks below every probability
    k_max = max(k_b)
    if k_max:
        oracle = torch.gather(cand, 2, topk_indices(cand_score, k_max))  # (R, H, k_max), largest first
        in_top = torch.arange(k_max, device=dev) < lengths(k_b)[:, :, None]  # row r's oracle: its first k_b[r]
        hits = (torch.gather(is_sel, 2, oracle) & in_top).sum(-1).float()
        recall = torch.where(lengths(k_b) > 0, hits / lengths(k_b).clamp_min(1), 1.0)
    else:
        recall = torch.ones(R, H, device=dev)
    mass = (p * attended[:, :, None, :]).sum(-1).mean(-1)  # (R, H)
    masked = torch.where(attended[:, :, None, :], p, torch.zeros((), device=dev))
    o_sel = torch.matmul(masked / masked.sum(-1, keepdim=True), V)
    norm = o_exact.flatten(2).norm(dim=2).clamp_min(1e-12)
    err_sel = (o_sel - o_exact).flatten(2).norm(dim=2) / norm
    err_approx = (out.float() - o_sel).flatten(2).norm(dim=2) / norm
    pos_sum = torch.where(k_idx < n_sel, positions, 0).float().sum(-1)
    mean_pos = pos_sum / n_sel[:, :, 0] / torch.tensor([max(n, 1) for n in layout.lengths], device=dev)[:, None]
    stats = torch.stack([recall.float(), mass, err_sel, err_approx, mean_pos], 1)  # (R, 5, H), fp32
    for r, rec in enumerate(recorders):
        rec._add(int(sel_lens[r]), stats[r])


__all__ = ["AttentionRecorder", "RowsLayout", "attend", "record_rows", "rows_layout"]

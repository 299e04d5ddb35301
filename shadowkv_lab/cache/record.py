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
        """qg: (H, G, d) query; positions: (H, k) selected prompt positions; out: (H, G, d) the method's output;
        gen: the generated tokens' (k, v), (H, T, d) each, new token included (default: the layer's own buffer; the
        stacked step holds them in its stack and passes the row's slice)."""
        if layer.exact_k is None or layer.exact_v is None:
            raise RuntimeError("recording needs the exact prompt keys/values: build the cache with record=True")
        H, d, P = layer.H, layer.d, layer.prefix
        gk, gv = layer.gen.view() if gen is None else gen
        K = torch.cat([layer.exact_k, layer.local_k, gk], 1)  # all tokens in position order: prefix, local, generated
        V = torch.cat([layer.exact_v, layer.local_v, gv], 1)
        N = K.shape[1]
        p = torch.softmax(torch.matmul(qg.float(), K.float().transpose(1, 2)) * layer.ctx.scaling, -1)  # (H, G, N)
        o_exact = torch.matmul(p, V.float())
        attended = torch.zeros(H, N, dtype=torch.bool, device=K.device)
        attended[:, P:] = True  # local window and generated tokens are always attended
        attended.scatter_(1, layer.out_pos, True)
        attended.scatter_(1, positions, True)
        cand = layer._chunk_positions(layer.cand_ids)  # (H, M*c)
        k_b = min(positions.shape[1], cand.shape[1])
        cand_score = torch.gather(p.max(dim=1).values, 1, cand)
        oracle = torch.gather(cand, 1, topk_indices(cand_score, k_b)) if k_b else cand[:, :0]
        is_sel = torch.zeros(H, N, dtype=torch.bool, device=K.device)
        is_sel.scatter_(1, positions, True)
        recall = torch.gather(is_sel, 1, oracle).float().mean(dim=1) if k_b else torch.ones(H, device=K.device)
        mass = (p * attended.unsqueeze(1)).sum(-1).mean(-1)  # (H,)
        masked = torch.where(attended.unsqueeze(1), p, torch.zeros((), device=p.device))
        o_sel = torch.matmul(masked / masked.sum(-1, keepdim=True), V.float())
        norm = o_exact.flatten(1).norm(dim=1).clamp_min(1e-12)
        err_sel = (o_sel - o_exact).flatten(1).norm(dim=1) / norm
        err_approx = (out.float() - o_sel).flatten(1).norm(dim=1) / norm
        mean_pos = positions.float().mean(dim=1) / max(layer.L, 1)
        stats = torch.stack([recall.float(), mass, err_sel, err_approx, mean_pos])  # (5, H), fp32
        self._pending.append(((self.row, self.step, self.layer, int(positions.shape[1])), stats))
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

__all__ = ["AttentionRecorder", "attend"]

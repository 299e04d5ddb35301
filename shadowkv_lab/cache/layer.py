"""One layer of one sequence: the compressed "shadow" of the prompt's KV cache and the decode-step attention.

Shapes: H KV heads, G query heads per KV head (Hq = H*G), d head dim, L prompt length, c chunk size,
M candidate chunks per head, B sparse budget in tokens, T generated tokens.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import torch

from ..selection import chunk_positions, topk_indices
from .config import NATIVE, OffloadConfig
from .key_offset import fit_offset, landmark_offsets
from .stores import GrowBuffer, RowStore

RopeFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (x (H, k, d), positions (H, k)) -> rotated x


def key_svd(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD (U, S, Vh) of the (L, H*d) fp32 pre-RoPE keys. cuSOLVER can fail to converge on a prompt's keys (it
    did on a multi-key NIAH prompt at 16k on an H100, after its gesvdj-then-gesvd retry); the same decomposition is
    then computed by LAPACK in fp64 on the CPU and returned in fp32 on x's device, with a warning. Non-finite keys
    are an error: no decomposition of them means anything."""
    try:
        return torch.linalg.svd(x, full_matrices=False)
    except torch.linalg.LinAlgError as e:
        bad = int((~torch.isfinite(x)).sum())
        if bad:
            raise ValueError(f"keys {tuple(x.shape)} hold {bad} non-finite values: the prefill overflowed") from e
        warnings.warn(f"linalg.svd of keys {tuple(x.shape)} on {x.device} did not converge ({e}); "
                      "computed in fp64 on the CPU instead", RuntimeWarning, stacklevel=2)
        return tuple(t.float().to(x.device) for t in torch.linalg.svd(x.double().cpu(), full_matrices=False))


@dataclass
class LayerContext:
    """What a layer cache needs from the model: rotary embedding at absolute positions, scaling, heads, devices."""

    rope: RopeFn
    scaling: float
    n_q_heads: int
    compute_device: torch.device
    offload_device: torch.device  # host memory on CUDA; the same CPU otherwise
    pin: bool
    k_bias: torch.Tensor | None = None  # (H*d,) the k_proj bias (the "bias" key offset); None: the model has none


def _copy(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A fresh contiguous tensor on `device` (never a view of the prefill state)."""
    return x.to(device=device, copy=True, memory_format=torch.contiguous_format)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scaling: float) -> torch.Tensor:
    """Exact attention of one query token per head group. q: (H, G, d); k, v: (H, N, d) -> (H, G, d) in q's dtype."""
    s = torch.matmul(q.float(), k.float().transpose(1, 2)) * scaling
    p = torch.softmax(s, dim=-1)
    return torch.matmul(p, v.float()).to(q.dtype)


class ExactLayer:
    """Full attention: every K/V kept on the device. Used by kind="full" and as the fallback when the prompt is
    too short for the method to drop anything (fewer tokens than local window + outliers)."""

    def __init__(self, k_post: torch.Tensor, v: torch.Tensor, ctx: LayerContext, reason: str = "full"):
        self.ctx = ctx
        self.k, self.v = k_post, v
        H, _, d = k_post.shape
        self.gen = GrowBuffer(H, d, k_post.dtype, ctx.compute_device)
        self.reason = reason
        self.last_selection = None

    def decode(self, q: torch.Tensor, k_pre: torch.Tensor, k_post: torch.Tensor, v: torch.Tensor, recorder=None) -> torch.Tensor:
        """q: (Hq, d); k_pre, k_post, v: (H, d) of the new token -> (Hq, d)."""
        self.gen.append(k_post, v)
        gk, gv = self.gen.view()
        H, d = self.k.shape[0], self.k.shape[2]
        out = attend(q.view(H, -1, d), torch.cat([self.k, gk], 1), torch.cat([self.v, gv], 1), self.ctx.scaling)
        return out.view(-1, d)

    def memory(self) -> list[tuple[str, str, int, int]]:
        kv = self.k.nbytes + self.v.nbytes
        return [("prompt_kv", "device", kv, kv), ("generated", "device", self.gen.storage_bytes, self.gen.storage_bytes)]


class SparseLayer:
    """ShadowKV-family layer (docs/algorithms.md): landmarks + low-rank or stored keys on the device side, values (and
    stored keys) offloaded; each decode step selects B tokens per KV head and attends exactly over them plus the
    outliers, the local window and the generated tokens."""

    def __init__(self, config: OffloadConfig, k_pre: torch.Tensor, k_post: torch.Tensor, v: torch.Tensor,
                 ctx: LayerContext, keep_exact: bool = False, svd_memo: tuple[dict, int] | None = None):
        """k_pre, k_post, v: (H, L, d) exact prompt keys (before / after RoPE) and values.
        svd_memo: (dict, key) where this prompt's key SVD is stored and reused across methods."""
        self.cfg, self.ctx = config, ctx
        H, L, d = k_post.shape
        c = config.chunk_size
        self.H, self.L, self.d, self.c = H, L, d, c
        self.G = ctx.n_q_heads // H
        dev = ctx.compute_device
        n_chunks = L // c - config.local_budget // c
        n_out = min(config.outlier_chunks, n_chunks)
        self.M = n_chunks - n_out  # candidate chunks per head
        assert self.M > 0, "caller must fall back to ExactLayer when there is no candidate"
        self.prefix = n_chunks * c
        # Local window: the last W tokens plus the remainder L mod c, exact and resident.
        # Copies, not views: a view would keep the whole prefill tensor alive and void the memory savings.
        self.local_k, self.local_v = _copy(k_post[:, self.prefix:], dev), _copy(v[:, self.prefix:], dev)

        chunk_keys = k_post[:, : self.prefix].reshape(H, n_chunks, c, d)
        landmarks = chunk_keys.mean(dim=2)  # (H, n_chunks, d), the model dtype as in the reference
        if c > 1:  # outliers: chunks whose least-similar token is farthest from the chunk mean
            cos = torch.nn.functional.cosine_similarity(chunk_keys.float(), landmarks.float().unsqueeze(2), dim=-1)
            chunk_score = cos.min(dim=-1).values  # (H, n_chunks)
            out_ids = torch.topk(chunk_score, n_out, dim=-1, largest=False).indices.sort(dim=-1).values
        else:  # chunk size 1: the outliers are the first tokens (attention sinks)
            out_ids = torch.arange(n_out, device=k_post.device).unsqueeze(0).expand(H, n_out)
        is_out = torch.zeros(H, n_chunks, dtype=torch.bool, device=k_post.device)
        is_out.scatter_(1, out_ids, True)
        # A copy: the nonzero() result holds (row, col) pairs, twice what the cache keeps.
        self.cand_ids = _copy(torch.nonzero(~is_out)[:, 1].view(H, self.M), dev)  # ascending chunk ids per head
        out_pos = self._chunk_positions(out_ids)  # (H, n_out*c)
        self.out_pos = out_pos.to(dev)
        self.out_k = torch.gather(k_post, 1, out_pos.unsqueeze(-1).expand(-1, -1, d)).to(dev)
        self.out_v = torch.gather(v, 1, out_pos.unsqueeze(-1).expand(-1, -1, d)).to(dev)

        cand_landmarks = torch.gather(landmarks, 1, self.cand_ids.to(landmarks.device).unsqueeze(-1).expand(-1, -1, d))
        self._init_landmarks(cand_landmarks, k_pre)
        self._init_keys(k_pre, svd_memo)
        home = ctx.offload_device if config.offload else dev
        pin = ctx.pin and config.offload
        self.values = RowStore(v[:, : self.prefix], config.value_format, config.value_group, home, dev, pin)
        # Exact post-RoPE prompt keys/values for the oracle and for the attention-level analysis only.
        self.exact_k = _copy(k_post[:, : self.prefix], dev) if (keep_exact or config.selection == "oracle") else None
        self.exact_v = _copy(v[:, : self.prefix], dev) if keep_exact else None
        self.gen = GrowBuffer(H, d, k_post.dtype, dev)
        self.budget = config.budget_tokens(L)
        self.step_buffer_bytes = 0
        self.last_selection: torch.Tensor | None = None

    # ------------------------------------------------------------------ prefill helpers
    def _chunk_positions(self, chunk_ids: torch.Tensor) -> torch.Tensor:
        """(H, n) chunk ids -> (H, n*c) token positions."""
        return chunk_positions(chunk_ids, self.c)

    def _init_landmarks(self, lm: torch.Tensor, k_pre: torch.Tensor) -> None:
        """lm: (H, M, d) candidate landmarks; k_pre: (H, L, d) pre-RoPE prompt keys (for the landmark offset)."""
        fmt = self.cfg.landmark_format
        self.landmark_dtype = lm.dtype
        self.landmark_mu = None
        if fmt == NATIVE:
            self.landmark_q, self.landmarks = None, lm.to(self.ctx.compute_device)
            return
        from shadowkv_lab.quant import make_quantizer

        self.landmark_q = make_quantizer(fmt, group=self.cfg.landmark_group or self.d)
        if self.cfg.landmark_offset != "none":
            self.landmark_mu = fit_offset(k_pre, self.cfg.landmark_offset).to(self.ctx.compute_device)  # (H, d)
            lm = lm.float() - self._landmark_offsets().to(lm.device)
        # One quantized tensor per head: residual quantization groups consecutive landmarks of one head.
        self.landmarks = [self.landmark_q.quantize(lm[h]).to(self.ctx.compute_device) for h in range(self.H)]

    def _landmark_offsets(self) -> torch.Tensor:
        """(H, M, d) fp32: each candidate landmark's share of the RoPE'd key mean (recomputed, never stored)."""
        return landmark_offsets(self.landmark_mu, self.cand_ids, self.c, self.ctx.rope)

    def _landmarks(self) -> torch.Tensor:
        """(H, M, d) landmarks as the scoring sees them: dequantized, offset added back, in the model dtype; in fp32,
        unrounded, with landmark_scoring="codes" (what scoring the codes through the query's table computes:
        q . l = s * sum_j LUT[j, code_j] is the fp32 dot product with the exact dequantized landmark)."""
        if self.landmark_q is None:
            return self.landmarks
        deq = torch.stack([self.landmark_q.dequantize(t) for t in self.landmarks])
        if self.landmark_mu is not None:
            deq = deq + self._landmark_offsets()
        return deq if self.cfg.landmark_scoring == "codes" else deq.to(self.landmark_dtype)

    def _init_keys(self, k_pre: torch.Tensor, svd_memo: tuple[dict, int] | None = None) -> None:
        cfg, dev = self.cfg, self.ctx.compute_device
        H, L, d = k_pre.shape
        rank = cfg.rank_for(H, d)
        if rank > 0:
            # One SVD per layer, jointly across heads, not mean-centred, fp32, exact (not randomized).
            memo, key = svd_memo if svd_memo is not None else ({}, None)
            if key not in memo:
                memo[key] = key_svd(k_pre.transpose(0, 1).reshape(L, H * d).float())
            U, S, Vh = memo[key]
            r = min(rank, U.shape[1])
            self.rank = r
            self.U = _copy(U[: self.prefix, :r].to(k_pre.dtype), dev)  # (prefix, r)
            self.SV = (S[:r, None] * Vh[:r]).view(r, H, d).transpose(0, 1).contiguous().to(k_pre.dtype).to(dev)  # (H, r, d)
            self.keys = None
        else:
            self.rank, self.U, self.SV = -1, None, None
            on_dev = cfg.keys_on_device or not cfg.offload
            home = dev if on_dev else self.ctx.offload_device
            self.keys = RowStore(k_pre[:, : self.prefix], cfg.key_format, cfg.key_group, home, dev, self.ctx.pin and not on_dev,
                                 offset=cfg.key_offset, bias=self.ctx.k_bias)

    # ------------------------------------------------------------------ decode
    def select(self, q: torch.Tensor) -> torch.Tensor:
        """q: (H, G, d) -> selected token positions (H, k), k <= budget."""
        cfg = self.cfg
        if cfg.selection == "oracle":
            pos = self._chunk_positions(self.cand_ids)  # (H, M*c)
            keys = torch.gather(self.exact_k, 1, pos.unsqueeze(-1).expand(-1, -1, self.d))
            p = torch.softmax(torch.matmul(q.float(), keys.float().transpose(1, 2)) * self.ctx.scaling, -1)
            score = p.max(dim=1).values
            k = min(self.budget, pos.shape[1])
            if k >= pos.shape[1]:
                return pos
            return torch.gather(pos, 1, topk_indices(score, k))
        n_sel = min(self.budget // self.c, self.M)
        if n_sel >= self.M:  # the budget covers every candidate: nothing to rank
            return self._chunk_positions(self.cand_ids)
        if n_sel == 0:
            return self.cand_ids[:, :0]
        lm = self._landmarks()  # (H, M, d)
        if cfg.scoring == "softmax_max":
            logits = torch.matmul(q.float(), lm.float().transpose(1, 2)) * self.ctx.scaling  # (H, G, M)
            p = torch.softmax(logits, dim=-1)
            if cfg.score_precision == "bf16":
                p = p.to(torch.bfloat16)
            score = p.max(dim=1).values
        else:  # serving rule: unscaled dot product with the group-mean query
            score = torch.matmul(q.float().mean(dim=1, keepdim=True), lm.float().transpose(1, 2)).squeeze(1)
        top = topk_indices(score, n_sel)
        return self._chunk_positions(torch.gather(self.cand_ids, 1, top))

    def selected_kv(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys (post-RoPE, at their original absolute positions) and values of the selected tokens, (H, k, d)."""
        if self.rank > 0:
            k_pre = torch.bmm(self.U[positions], self.SV)  # (H, k, r) @ (H, r, d)
        else:
            k_pre = self.keys.gather(positions)
        return self.ctx.rope(k_pre, positions), self.values.gather(positions)

    def decode(self, q: torch.Tensor, k_pre: torch.Tensor, k_post: torch.Tensor, v: torch.Tensor, recorder=None) -> torch.Tensor:
        """q: (Hq, d) post-RoPE query of the new token; k_pre, k_post, v: (H, d) -> attention output (Hq, d).
        The per-row torch reference on every device; the production step is cache.batched (torch or Triton)."""
        H, d = self.H, self.d
        self.gen.append(k_post, v)
        qg = q.view(H, self.G, d)
        positions = self.select(qg)
        sel_k, sel_v = self.selected_kv(positions)
        self.step_buffer_bytes = max(self.step_buffer_bytes, sel_k.nbytes + sel_v.nbytes)
        gk, gv = self.gen.view()
        K = torch.cat([self.out_k, self.local_k, sel_k, gk], dim=1)
        V = torch.cat([self.out_v, self.local_v, sel_v, gv], dim=1)
        out = attend(qg, K, V, self.ctx.scaling)
        self.last_selection = positions
        if recorder is not None:
            recorder.on_step(self, qg, positions, out)
        return out.view(-1, d)

    # ------------------------------------------------------------------ accounting
    def memory(self) -> list[tuple[str, str, int, int]]:
        """(category, role, storage bytes, packed bytes); role "device" is what stays on the GPU,
        "offloaded" what lives in host memory, "analysis" what only the oracle/analysis needs."""
        rows = []
        if self.landmark_q is None:
            rows.append(("landmarks", "device", self.landmarks.nbytes, self.landmarks.nbytes))
        else:
            rows.append(("landmarks", "device", sum(t.nbytes_storage for t in self.landmarks), sum(t.nbytes_packed for t in self.landmarks)))
        if self.landmark_mu is not None:
            n = self.landmark_mu.nbytes
            rows.append(("landmark_offset", "device", n, n))
        if self.rank > 0:
            rows.append(("lowrank_U", "device", self.U.nbytes, self.U.nbytes))
            rows.append(("lowrank_SV", "device", self.SV.nbytes, self.SV.nbytes))
        else:
            role = "device" if (self.cfg.keys_on_device or not self.cfg.offload) else "offloaded"
            rows.append(("keys", role, self.keys.storage_bytes, self.keys.packed_bytes))
            if self.keys.offset is not None:
                n = self.keys.offset.nbytes
                rows.append(("key_offset", "device", n, n))
        vrole = "offloaded" if self.cfg.offload else "device"
        rows.append(("values", vrole, self.values.storage_bytes, self.values.packed_bytes))
        loc = self.local_k.nbytes + self.local_v.nbytes
        rows.append(("local", "device", loc, loc))
        outl = self.out_k.nbytes + self.out_v.nbytes
        rows.append(("outliers", "device", outl, outl))
        rows.append(("candidate_ids", "device", self.cand_ids.nbytes, self.cand_ids.nbytes))
        rows.append(("generated", "device", self.gen.storage_bytes, self.gen.storage_bytes))
        rows.append(("step_buffer", "device", self.step_buffer_bytes, self.step_buffer_bytes))
        for name, t in (("exact_keys", self.exact_k), ("exact_values", self.exact_v)):
            if t is not None:
                rows.append((name, "analysis", t.nbytes, t.nbytes))
        return rows


def build_layer(config: OffloadConfig, k_pre: torch.Tensor, k_post: torch.Tensor, v: torch.Tensor, ctx: LayerContext,
                keep_exact: bool = False, svd_memo: tuple[dict, int] | None = None):
    """Choose the layer implementation; prompts too short to drop anything fall back to exact attention."""
    dev = ctx.compute_device
    if config.kind == "full":
        return ExactLayer(k_post.to(dev), v.to(dev), ctx, reason="full")
    L, c = k_post.shape[1], config.chunk_size
    n_chunks = L // c - config.local_budget // c
    if n_chunks - min(config.outlier_chunks, n_chunks) <= 0:
        return ExactLayer(k_post.to(dev), v.to(dev), ctx, reason=f"fallback: prompt of {L} tokens leaves no candidate chunk")
    return SparseLayer(config, k_pre, k_post, v, ctx, keep_exact=keep_exact, svd_memo=svd_memo)

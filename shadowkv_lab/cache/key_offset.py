"""Key offsets: remove a constant per-channel offset from pre-RoPE keys before they are quantized.

Why: models with a k_proj bias (Qwen2.5) have layers whose pre-RoPE keys are dominated by one constant vector (in
the 1.5B's layer 0, |k| is about 874 and the spread around the mean is 83 times smaller). A quantizer with one
scale per row then spends its bits on the offset, and the attention over the dequantized keys is wrong (see
docs/key_offset.md for the measurements). Subtracting a per-KV-head, per-channel offset `mu` before quantizing
and adding it back after dequantizing (before RoPE, so the rotation sees the true key) lets the codes describe
the part of the key that varies between tokens.

Rules (`OffloadConfig.key_offset`):
- "none": the paper's recipe, nothing subtracted.
- "mean": mu = mean of the prompt's pre-RoPE keys, subtracted from every token.
- "bias": mu = the layer's k_proj bias (zero for a model without one), subtracted from every token.
- "selective": mu = the mean, subtracted only from rows where |k - mu| < |k|. Attention-sink tokens have keys
  near zero and carry a large share of the attention; centring them would turn them into rows of norm |mu|, so
  they keep their raw key. One flag per quantized row (1 bit packed) says which rows were centred.

Landmarks (`OffloadConfig.landmark_offset="mean"`) are post-RoPE chunk means, so their offset is the chunk mean of
R_t(mu), a different vector at every position: `landmark_offsets` computes it from mu and the rotary embedding,
and the layer removes it before quantizing and adds it back to the dequantized landmarks before scoring. Only
mu (H*d numbers per layer) is stored.

Shapes: H KV heads, P prompt rows, d head dim. A row is one quantization row: a whole token (H*d channels,
"token-major") when the quantizer group spans the token, else one head's d channels ("head-major").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KEY_OFFSETS = ("none", "mean", "bias", "selective")
LANDMARK_OFFSETS = ("none", "mean")
FLAG = "offset_flag"  # name of the per-row flag tensor inside a QuantizedTensor's rows


def fit_offset(x: torch.Tensor, rule: str, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x: (H, P, d) pre-RoPE prompt keys -> mu (H, d) fp32 for `rule` (not "none")."""
    if rule not in KEY_OFFSETS or rule == "none":
        raise ValueError(f"key offset rule {rule!r}: allowed {KEY_OFFSETS[1:]}")
    H, _, d = x.shape
    if rule == "bias":
        if bias is None:
            return torch.zeros(H, d, dtype=torch.float32, device=x.device)
        return bias.reshape(H, d).float().to(x.device)
    return x.float().mean(dim=1)


@dataclass
class KeyOffset:
    """The offset of one key store. mu: (H, d) fp32 on the compute device; selective: rows carry a flag."""

    rule: str
    mu: torch.Tensor
    token_major: bool

    @property
    def selective(self) -> bool:
        return self.rule == "selective"

    def row_mu(self, H: int) -> torch.Tensor:
        """mu laid out like a row: (1, H*d) token-major, (H, 1, d) head-major."""
        return self.mu.reshape(1, -1) if self.token_major else self.mu.view(H, 1, -1)

    def subtract(self, rows: torch.Tensor, H: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """rows: fp32 (P, H*d) token-major or (H, P, d) head-major -> (centred rows, flag (P,) / (H, P) bool or
        None). Non-selective rules centre every row."""
        mu = self.row_mu(H).to(rows.device)
        centred = rows - mu
        if not self.selective:
            return centred, None
        flag = centred.norm(dim=-1) < rows.norm(dim=-1)
        return torch.where(flag.unsqueeze(-1), centred, rows), flag

    def restore(self, x: torch.Tensor, flag: torch.Tensor | None, mu: torch.Tensor) -> torch.Tensor:
        """Add the offset back to dequantized rows already in the model dtype, as every decode path does:
        round(float(x) + mu) where the row was centred, x unchanged elsewhere. x (..., C), flag (...) bool or
        None, mu broadcastable to x (fp32)."""
        y = (x.float() + mu).to(x.dtype)
        return y if flag is None else torch.where(flag.unsqueeze(-1), y, x)

    @property
    def nbytes(self) -> int:
        return self.mu.numel() * self.mu.element_size()


def landmark_offsets(mu: torch.Tensor, chunk_ids: torch.Tensor, c: int, rope) -> torch.Tensor:
    """The landmark offset of each chunk: mean over the chunk's c positions of RoPE(mu, position), fp32.
    mu (H, d) fp32; chunk_ids (H, M) long; rope(x (H, k, d), positions (H, k)) -> (H, M, d)."""
    H, M = chunk_ids.shape
    d = mu.shape[-1]
    pos = (chunk_ids.unsqueeze(-1) * c + torch.arange(c, device=chunk_ids.device)).flatten(-2)  # (H, M*c)
    rot = rope(mu.unsqueeze(1).expand(H, M * c, d).contiguous(), pos.to(mu.device)).float()
    return rot.view(H, M, c, d).mean(dim=2)

"""Triton kernels of the offloaded decode step (docs/gpu.md), each with a torch reference beside it.

    scoring.py    landmark scores fused with dequantization (bf16/fp16, FP8, HIGGS dequantized as the reference does), both
                  selection rules; top-k -> token positions
    fetch.py      zero-copy gather of selected rows from pinned host memory with fp8 decoding and RoPE, HIGGS
                  token-row dequantization (in-register Walsh-Hadamard), low-rank key rebuild U[pos] @ SV + RoPE,
                  and the ShadowKV cache-hit policy (ResidentSet: only rows missing from the previous step move)
    attention.py  split-K decode attention over several KV segments (no concatenation)
    dispatch.py   what SparseLayer calls: enabled(layer), sparse_decode(layer, ...), score_and_select, gather_selected
    matmul.py     batch-invariant linear / RMSNorm (one fixed tiling, no split-K) and invariant_decode(model)
    common.py     shared Triton helpers (fp8 decode, Walsh-Hadamard, RoPE table from the model's rotary function)

Importing a submodule imports triton; the cache imports dispatch only when it decodes on the kernels.
"""

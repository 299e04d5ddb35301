"""Triton kernels of the offloaded decode step (docs/gpu.md), each with a torch reference beside it.

    scoring.py    landmark scores fused with dequantization (bf16/fp16, FP8, HIGGS dequantized as the reference does), both
                  selection rules; top-k -> token positions
    fetch.py      zero-copy gather of selected rows from pinned host memory with fp8 decoding and RoPE, HIGGS
                  token-row dequantization (in-register Walsh-Hadamard), low-rank key rebuild U[pos] @ SV + RoPE,
                  and the ShadowKV cache-hit policy (ResidentSet: only rows missing from the previous step move)
    attention.py  split-K decode attention over several KV segments (no concatenation)
    matmul.py     batch-invariant linear / RMSNorm (one fixed tiling, no split-K) and invariant_decode(model)
    common.py     shared Triton helpers (fp8 decode, Walsh-Hadamard, RoPE table from the model's rotary function)

The decode step that uses them is cache.batched's "triton" backend (BatchPlan). The kernels never import the cache:
the top-k rule they share with it is shadowkv_lab.selection. Importing a submodule imports triton; the cache imports
the kernels inside the functions that use them.
"""

"""Greedy generation with an offloading cache: one exact prefill, then batched decode steps.

`generate` is the one-call API; `prefill`, `build_cache` and `decode` are the pieces the experiment runner
uses to share one prefill between many methods and to decode many sequences per forward pass.
"""

from __future__ import annotations

import contextlib
import time
import types
from dataclasses import dataclass, field

import torch

from .attention import DecodeBatch, PrefillCapture, decode_forward, layer_contexts, patch_model, session
from .cache.batched import BatchPlan
from .cache.config import OffloadConfig
from .cache.memory import MemoryReport
from .cache.presets import resolve
from .cache.sequence import PrefillState, SequenceCache
from .prefill_store import PrefillStore

END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "</s>", "<|end|>")


def encode_prompt(tokenizer, prompt) -> torch.Tensor:
    """A user-message string goes through the chat template (Qwen3 thinking off, no system prompt); a list or
    tensor of token ids is used as is. Returns (L,) long."""
    if isinstance(prompt, str):
        msgs = [{"role": "user", "content": prompt}]
        kw = dict(add_generation_prompt=True, tokenize=False)
        try:
            text = tokenizer.apply_chat_template(msgs, enable_thinking=False, **kw)
        except TypeError:
            text = tokenizer.apply_chat_template(msgs, **kw)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        return torch.tensor(ids, dtype=torch.long)
    if torch.is_tensor(prompt):
        ids = prompt.reshape(-1).long()
    elif isinstance(prompt, (list, tuple)) and all(isinstance(i, int) for i in prompt):
        ids = torch.tensor(prompt, dtype=torch.long)
    else:
        raise TypeError(f"prompt must be a user-message string or token ids, got {type(prompt).__name__}")
    if ids.numel() == 0:
        raise ValueError("prompt is empty")
    return ids


def stop_token_ids(model, tokenizer) -> set[int]:
    """The model's end-of-turn tokens: generation config eos ids, the tokenizer's eos and known end-of-turn markers."""
    ids: set[int] = set()
    eos = getattr(model.generation_config, "eos_token_id", None)
    for e in eos if isinstance(eos, (list, tuple)) else [eos]:
        if e is not None:
            ids.add(int(e))
    if tokenizer is not None:
        if tokenizer.eos_token_id is not None:
            ids.add(int(tokenizer.eos_token_id))
        vocab = tokenizer.get_vocab()
        ids.update(vocab[t] for t in END_OF_TURN_TOKENS if t in vocab)
    return ids


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def cpu_fp32_linears(model):
    """On the CPU, the model's bf16/fp16 nn.Linear layers multiply in fp32 inside the block: inputs and weights
    widened exactly, an fp32 sum, the output rounded back to the model's dtype (what a GPU bf16 GEMM computes, up to
    the order of the sum). CPUs without bf16 instructions multiply bf16 matrices about 70x slower than fp32 ones
    (0.9 against 67 GFLOP/s on the 2-core CI machine): a 2k-token prefill of the 0.5B took 82 s, and takes 16 s. The fp32
    weights are made once per model and kept (4 bytes a parameter of host memory).

    Used for prefill only: one prompt per call, so no batch-size question arises (decode keeps the model's own
    Linear, whose per-row results the batch-invariance tests pin). A no-op on CUDA and for fp32 models."""
    p = next(model.parameters())
    if p.device.type != "cpu" or p.dtype not in (torch.bfloat16, torch.float16):
        yield
        return
    wide = model.__dict__.setdefault("_skv_fp32_linears", {})
    mods = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and "forward" not in m.__dict__]
    for m in mods:  # modules another context has patched keep their forward
        if m not in wide:
            wide[m] = (m.weight.float(), None if m.bias is None else m.bias.float())

        def forward(self, x, _w=wide[m]):
            return torch.nn.functional.linear(x.float(), _w[0], _w[1]).to(x.dtype)

        m.forward = types.MethodType(forward, m)
    try:
        yield
    finally:
        for m in mods:
            del m.forward


@torch.inference_mode()
def prefill_forward(model, input_ids: torch.Tensor, cap):
    """The one exact forward of a prompt (L,) under the capture `cap` (a PrefillCapture), the CPU's fp32 linears
    included: every prefill and every diagnostic capture see the same keys. The model's output (last logits only)."""
    patch_model(model)
    device = next(model.parameters()).device
    with session(cap), cpu_fp32_linears(model):
        return model(input_ids=input_ids.view(1, -1).to(device), use_cache=False, logits_to_keep=1)


@torch.inference_mode()
def prefill(model, input_ids: torch.Tensor, store: PrefillStore | None = None) -> PrefillState:
    """Exact prefill of one prompt (L,); captures every layer's pre-/post-RoPE keys and values. With a `store`, a
    prefill it holds for this model and prompt is read back (bit-identical, its prefill_s the original run's) and a
    new one is saved there."""
    if store is not None:
        got = store.get(model, input_ids)
        if got is not None:
            return got
    device = next(model.parameters()).device
    cap = PrefillCapture(len(layer_contexts(model)))
    t0 = time.perf_counter()
    out = prefill_forward(model, input_ids, cap)
    _sync(device)
    state = PrefillState(input_ids=input_ids.cpu(), k_pre=cap.k_pre, k_post=cap.k_post, v=cap.v,
                         first_logits=out.logits[0, -1].float(), prefill_s=time.perf_counter() - t0)
    if store is not None:
        store.put(model, state)
    return state


def build_cache(model, state: PrefillState, config: OffloadConfig, record: bool = False) -> SequenceCache:
    """Compress one prefilled prompt under `config` (SVD, landmarks, outliers, quantization, offload)."""
    return SequenceCache(config, state, layer_contexts(model), record=record)


@dataclass
class DecodeOutput:
    token_ids: list[int]
    # "stop" (end-of-turn token), "length" (hit max_new_tokens: flagged, never silent), or None: still generating when
    # a call with until_active returned (pass token_ids back as its first_tokens to go on)
    finish_reason: str | None
    decode_s: float = 0.0


@torch.inference_mode()
def decode(model, caches: list[SequenceCache], first_tokens: list, max_new_tokens: list[int] | int,
           stop_ids: set[int], progress=None, on_logits=None, batched: bool = True, backend: str | None = None,
           graphs: bool | None = None, until_active: int = 0,
           return_after_s: float | None = None) -> list[DecodeOutput]:
    """Greedy batched decode: each row has its own cache; finished rows drop out of the batch.

    first_tokens: per row, the token chosen from its prefill logits (counted as the first new token), or the list of
    every token it has so far when it resumes from an earlier call (its cache holds all of them but the last). A lone
    token for a cache that already holds generated tokens continues it with a fresh count of new tokens.
    max_new_tokens: each row's cap on its new tokens in all (resumed tokens count).
    until_active: return as soon as this many rows or fewer are still generating (0: when all have finished); the
    others come back with finish_reason None, their caches ready for another call, alone or beside new rows (a row's
    tokens do not depend on its batch mates, so the split changes nothing).
    return_after_s: also return, the same way, at the first step after this many seconds at which a row has finished
    in this call, so that a caller can store finished rows before a time limit cuts a long call.
    on_logits(rows, logits (len(rows), vocab)): optional hook, e.g. for exactness tests (rows: the generating rows).
    batched: stack the rows of each method so a step costs O(layers x methods) ops (cache.batched.BatchPlan, the
    production step; backend "torch" or "triton", default: triton on CUDA; graphs: CUDA graphs, default on CUDA with
    triton). False runs every row's per-row reference layer step one by one (attention.DecodeBatch).
    """
    n = len(caches)
    if isinstance(max_new_tokens, int):
        max_new_tokens = [max_new_tokens] * n
    for m in max_new_tokens:
        if not isinstance(m, int) or m < 1:
            raise ValueError(f"max_new_tokens={m!r}: must be an int >= 1")
    if not isinstance(until_active, int) or isinstance(until_active, bool) or until_active < 0:
        raise ValueError(f"until_active={until_active!r}: must be an int >= 0")
    if return_after_s is not None and not (isinstance(return_after_s, (int, float)) and return_after_s >= 0):
        raise ValueError(f"return_after_s={return_after_s!r}: must be a number of seconds >= 0, or None")
    device = next(model.parameters()).device
    tokens = [list(t) if isinstance(t, (list, tuple)) else [t] for t in first_tokens]
    reason = [None] * n
    for i in range(n):
        fed = caches[i].generated  # a resumed row's cache holds every token but the last
        if isinstance(first_tokens[i], (list, tuple)) and fed != len(tokens[i]) - 1:
            raise ValueError(f"row {i}: {len(tokens[i])} tokens given but its cache holds {fed} generated tokens "
                             f"(a resumed row passes back every token it has; the cache holds all but the last)")
        if tokens[i][-1] in stop_ids:
            reason[i] = "stop"
        elif len(tokens[i]) >= max_new_tokens[i]:
            reason[i] = "length"
    # a stack holds each row's generated tokens so far plus what it may still generate
    room = [max(m - len(t) + 1, 1) for m, t in zip(max_new_tokens, tokens)]
    plan = BatchPlan(caches, room, backend=backend, graphs=graphs) if batched else None
    t0 = time.perf_counter()
    try:
        with _invariant_linears(model, device):
            _decode_loop(model, caches, tokens, reason, max_new_tokens, stop_ids, device, plan, progress, on_logits,
                         until_active, return_after_s)
    finally:
        if plan is not None:
            plan.close()
    _sync(device)
    dt = time.perf_counter() - t0
    return [DecodeOutput(token_ids=tokens[i], finish_reason=reason[i], decode_s=dt) for i in range(n)]


def _invariant_linears(model, device):
    """The decode step's linear layers, batch-invariant. On CUDA they and the RMSNorms run Triton kernels of one fixed
    configuration (kernels.matmul): cuBLAS picks its kernels by the number of rows, so a row's logits would depend
    on its batch mates. On CPU torch's kernels run, with a lone row given a zero mate (paired_lone_rows)."""
    if device.type != "cuda":
        return paired_lone_rows(model)
    from .kernels.matmul import invariant_decode

    return invariant_decode(model)


def _paired_linear(self, x: torch.Tensor) -> torch.Tensor:
    k = x.shape[-1]
    if x.numel() != k:  # two rows or more: oneDNN's GEMM, each row's sums independent of the others
        return torch.nn.functional.linear(x, self.weight, self.bias)
    pair = torch.cat([x.reshape(1, k), x.new_zeros(1, k)])
    return torch.nn.functional.linear(pair, self.weight, self.bias)[:1].view(*x.shape[:-1], -1)


@contextlib.contextmanager
def paired_lone_rows(model: torch.nn.Module):
    """While active, every nn.Linear of `model` computes a lone input row (B = 1) inside a product of two rows (the
    row and zeros). oneDNN's bf16 GEMM takes a GEMV path for one row whose sums round differently (K > 1024: the
    Qwen2.5 MLP's down projection) from the same row in any product of two or more rows, where every row's result is
    independent of the others' (tests/test_batch_invariance.py). With the pair, a cell alone and a cell in a batch
    run the same kernel. fp32 is not covered: MKL's fp32 GEMM also changes with the number of rows."""
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear) and "forward" not in m.__dict__]
    for m in linears:
        m.forward = types.MethodType(_paired_linear, m)
    try:
        yield model
    finally:
        for m in linears:
            del m.forward


def _decode_loop(model, caches, tokens, reason, max_new_tokens, stop_ids, device, plan, progress, on_logits,
                 until_active: int = 0, return_after_s: float | None = None) -> None:
    n = len(caches)
    t0, generating = time.perf_counter(), sum(r is None for r in reason)
    while True:
        active = [i for i in range(n) if reason[i] is None]
        if len(active) <= until_active or not active:
            break
        if return_after_s is not None and len(active) < generating and time.perf_counter() - t0 >= return_after_s:
            break
        if plan is not None:
            if plan.active != active:
                plan.set_active(active)
            rows = plan.batch_rows  # every stacked row: finished ones compute until their group is re-stacked
        else:
            rows = active
        ids = torch.tensor([[tokens[i][-1]] for i in rows], device=device)
        pos = torch.tensor([[caches[i].position] for i in rows], device=device)
        if plan is not None:
            logits = plan.forward(model, ids, pos)
        else:
            with session(DecodeBatch([caches[i] for i in rows])):
                logits = decode_forward(model, ids, pos)
        live = [j for j, i in enumerate(rows) if reason[i] is None]
        if on_logits is not None:
            on_logits([rows[j] for j in live], logits[live])
        nxt = logits.argmax(dim=-1).tolist()
        if plan is not None:
            plan.advance()
        for j in live:
            i = rows[j]
            caches[i].advance()
            tokens[i].append(nxt[j])
            if nxt[j] in stop_ids:
                reason[i] = "stop"
            elif len(tokens[i]) >= max_new_tokens[i]:
                reason[i] = "length"
        if progress is not None:
            progress(len(active))


@dataclass
class GenerationResult:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str
    memory: MemoryReport
    config: OffloadConfig
    prefill_s: float
    decode_s: float
    records: object = None  # pandas DataFrame of attention-level records when record=True
    fallback: list = field(default_factory=list)

    @property
    def new_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


def generate(model, tokenizer, prompt, config: OffloadConfig | str = "shadowkv", max_new_tokens: int = 256,
             record: bool = False, state: PrefillState | None = None) -> GenerationResult:
    """Greedy generation of one prompt under one method. Stops on the model's end-of-turn tokens; if
    `max_new_tokens` is reached first, finish_reason is "length" (result.truncated is True)."""
    config = resolve(config)
    if state is None:
        state = prefill(model, encode_prompt(tokenizer, prompt))
    cache = build_cache(model, state, config, record=record)
    first = int(state.first_logits.argmax())
    out = decode(model, [cache], [first], max_new_tokens, stop_token_ids(model, tokenizer))[0]
    text = tokenizer.decode(out.token_ids, skip_special_tokens=True) if tokenizer is not None else ""
    records = cache.recorder.frame() if cache.recorder is not None else None
    return GenerationResult(text=text, token_ids=out.token_ids, prompt_tokens=state.prompt_len, finish_reason=out.finish_reason,
                            memory=cache.memory_report(), config=config, prefill_s=state.prefill_s, decode_s=out.decode_s,
                            records=records, fallback=cache.fallback)

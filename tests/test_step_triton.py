"""The stacked decode step on the Triton backend (CUDA; here the interpreter): batch-invariant tokens, and the same
numbers as the torch backend up to reduction order.

CPU: Triton interpreter (set before triton is imported). On a GPU machine run with TRITON_INTERPRET=0."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import dataclasses  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from shadowkv_lab.cache.batched import BatchPlan  # noqa: E402
from shadowkv_lab.cache.presets import PRESETS  # noqa: E402
from shadowkv_lab.generation import build_cache, decode, prefill  # noqa: E402
from shadowkv_lab.testing import tiny_model  # noqa: E402

DEV = "cuda" if os.environ["TRITON_INTERPRET"] == "0" and torch.cuda.is_available() else "cpu"
SMALL = dict(local_budget=16, sparse_budget=48)
# Every layout of the experiment grid: low-rank keys, exact keys, oracle selection, HIGGS token rows with and without
# key offsets, FP8, full attention.
TARGETS = [
    dataclasses.replace(PRESETS["shadowkv"], rank=8, outlier_chunks=3, **SMALL),
    dataclasses.replace(PRESETS["shadowkv_serving"], rank=8, outlier_chunks=3, **SMALL),
    dataclasses.replace(PRESETS["oracle"], outlier_chunks=3, **SMALL),
    dataclasses.replace(PRESETS["yakv"], **SMALL),
    dataclasses.replace(PRESETS["yakv_centred"], **SMALL),
    dataclasses.replace(PRESETS["yakv_exactkv"], name="fp8_rows", key_format="fp8", value_format="fp8", **SMALL),
    PRESETS["full"],
]


@pytest.fixture(scope="module")
def model_states():
    model, _ = tiny_model("qwen2", seed=3, dtype=torch.bfloat16, device=DEV, head_dim=32)
    g = torch.Generator().manual_seed(4)
    states = [prefill(model, torch.randint(3, 384, (n,), generator=g)) for n in (301, 213, 407)]
    return model, states


def _tokens(model, rows, caps, backend="triton"):
    caches = [build_cache(model, st, cfg) for st, cfg in rows]
    firsts = [int(st.first_logits.argmax()) for st, _ in rows]
    return [o.token_ids for o in decode(model, caches, firsts, caps, stop_ids=set(), backend=backend, graphs=False)]


@torch.inference_mode()
def test_every_grid_layout_runs_on_the_kernels(model_states):
    model, states = model_states
    caches = [build_cache(model, states[0], cfg) for cfg in TARGETS]
    plan = BatchPlan(caches, 4, backend="triton")
    plan.set_active(list(range(len(caches))))
    assert [g.backends for g in plan.groups] == [["triton"]] * len(TARGETS)
    plan.close()


@torch.inference_mode()
def test_triton_step_is_batch_invariant(model_states):
    """Each cell alone (B = 1) and inside a batch of other methods and samples, with ragged stops (re-stacking), gives
    identical tokens on the kernels."""
    model, states = model_states
    cap = 6
    mates = [(states[1], c) for c in TARGETS] + [(states[2], TARGETS[0]), (states[2], TARGETS[3])]
    for cfg in TARGETS:
        alone = _tokens(model, [(states[0], cfg)], [cap])[0]
        got = _tokens(model, [mates[0], (states[0], cfg)] + mates[1:], [3, cap] + [2 + i % 5 for i in range(len(mates) - 1)])
        assert got[1] == alone, cfg.name


@torch.inference_mode()
def test_triton_backend_matches_torch_backend(model_states):
    """The two backends compute the same step with different reduction orders: the first decode step's logits agree
    to bf16 precision for every layout (tokens may part later on a random tiny model, where near-ties abound)."""
    model, states = model_states
    logits = {}
    for backend in ("triton", "torch"):
        caches = [build_cache(model, states[2], cfg) for cfg in TARGETS]
        first = int(states[2].first_logits.argmax())

        def hook(rows, lg, backend=backend):
            logits.setdefault(backend, {}).update({r: lg[j].float().clone() for j, r in enumerate(rows)})

        decode(model, caches, [first] * len(caches), 2, stop_ids=set(), on_logits=hook, backend=backend, graphs=False)
    for r, cfg in enumerate(TARGETS):
        a, b = logits["triton"][r], logits["torch"][r]
        assert (a - b).abs().max() <= 0.03 * b.abs().max(), cfg.name

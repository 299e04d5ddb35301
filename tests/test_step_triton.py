"""The stacked decode step on the Triton backend (CUDA; here the interpreter): batch-invariant tokens, the same
numbers as the torch backend up to reduction order, the reference's selection and bit-identical gathered rows on keys
with massive channels, and which layouts fall back to the torch backend (loudly).

CPU: Triton interpreter (set before triton is imported). On a GPU machine run with TRITON_INTERPRET=0."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import dataclasses  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

from shadowkv_lab.cache import batched  # noqa: E402
from shadowkv_lab.cache.batched import BatchPlan, RowState, SparseGroup, default_backend, default_graphs, triton_reason  # noqa: E402
from shadowkv_lab.cache.layer import LayerContext, SparseLayer, attend  # noqa: E402
from shadowkv_lab.cache.presets import PRESETS  # noqa: E402
from shadowkv_lab.generation import build_cache, decode, prefill  # noqa: E402
from shadowkv_lab.kernels.common import rope_table_from_freqs, torch_rope  # noqa: E402
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
def test_lut_cell_is_batch_invariant_on_the_kernels(model_states):
    """A yakv_lut cell alone (B = 1) and inside a batch of other methods and samples, with ragged stops (re-stacking),
    gives identical tokens on the triton backend; the torch backend's cell too (the same math on fp32 landmarks)."""
    model, states = model_states
    lut = PRESETS["yakv_lut"].replace(**SMALL)
    shadowkv = PRESETS["shadowkv"].replace(rank=8, outlier_chunks=3, **SMALL)
    cap = 6
    for backend in ("triton", "torch"):
        alone = _tokens(model, [(states[0], lut)], [cap], backend)[0]
        rows = [(states[1], PRESETS["yakv"].replace(**SMALL)), (states[0], lut), (states[2], lut), (states[1], lut),
                (states[2], shadowkv), (states[1], PRESETS["full"])]
        got = _tokens(model, rows, [3, cap, 2, 4, 5, 2], backend)
        assert got[1] == alone, backend


@torch.inference_mode()
def test_finished_rows_retire_in_place_on_the_kernels(model_states):
    """On the kernels a finished row stays in its stack with its segments emptied (no re-stack, no re-capture); the
    torch backend re-stacks a group once half of its rows have finished."""
    model, states = model_states
    cfgs = [TARGETS[0], PRESETS["full"]]
    for backend in ("triton", "torch"):
        caches = [build_cache(model, states[i % 3], cfg) for cfg in cfgs for i in range(4)]
        plan = BatchPlan(caches, 4, backend=backend, graphs=False)
        plan.set_active(list(range(8)))
        sparse, exact = plan.groups
        plan.set_active([0, 4, 5])  # sparse rows 1-3 and full rows 6-7 finished
        if backend == "triton":
            assert plan.groups == [sparse, exact] and plan.batch_rows == list(range(8))
            assert (sparse.retired, exact.retired) == ({1, 2, 3}, {2, 3})
            for lay in sparse.layers:
                for t in (lay.m_bh, lay.sel_bh, lay.res_bh):
                    rows = t.view(4, -1)
                    assert bool((rows[1:] == 0).all()) and bool((rows[0] > 0).all())
            assert all(bool((lay.prompt_bh.view(4, -1)[2:] == 0).all()) for lay in exact.layers)
            plan.set_active([4])  # a wholly finished group stays too (dropping it would re-capture the graph)
            assert plan.groups == [sparse, exact] and sparse.retired == {0, 1, 2, 3}
        else:
            assert [g.rows for g in plan.groups] == [[0], [4, 5]] and sparse not in plan.groups
        plan.close()


@torch.inference_mode()
def test_rows_resumed_in_a_new_stack_keep_their_tokens_on_the_kernels(model_states):
    """A decode call that returns with rows still generating (until_active) and a second call that stacks those rows
    again beside new ones (the runner's refill) give every row the tokens of one uninterrupted call: the generated
    tokens and the cache-hit state move into the new stack."""
    model, states = model_states
    rows = [(states[i % 3], cfg) for i, cfg in enumerate(TARGETS)]
    caps = [7] * len(rows)
    once = _tokens(model, rows, caps)
    caches = [build_cache(model, st, cfg) for st, cfg in rows]
    firsts = [int(st.first_logits.argmax()) for st, _ in rows]
    short = [3 if i % 2 else 7 for i in range(len(rows))]  # odd rows stop at 3 tokens: the call returns
    part = decode(model, caches, firsts, short, stop_ids=set(), backend="triton", graphs=False,
                  until_active=short.count(7))
    going = [i for i, o in enumerate(part) if o.finish_reason is None]
    assert going == [i for i in range(len(rows)) if i % 2 == 0] and all(len(part[i].token_ids) == 3 for i in going)
    mates = [(states[(i + 1) % 3], TARGETS[i]) for i in (0, 3)]  # new rows stacked beside the resumed ones
    new = [build_cache(model, st, cfg) for st, cfg in mates]
    rest = decode(model, [caches[i] for i in going] + new, [part[i].token_ids for i in going] +
                  [int(st.first_logits.argmax()) for st, _ in mates], [7] * (len(going) + 2), stop_ids=set(),
                  backend="triton", graphs=False)
    for j, i in enumerate(going):
        assert rest[j].token_ids == once[i], TARGETS[i].name


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
        # 4-bit HIGGS keys: the kernel dequantizes whole token rows through a tensor-core Hadamard, the torch backend
        # per head in fp32; on the H100 the two part by up to 0.031 of a 0.66 logit (a few bf16 steps).
        tol = 0.06 if cfg.key_format.startswith("higgs") else 0.03
        assert (a - b).abs().max() <= tol * b.abs().max(), cfg.name


def test_default_backend_follows_the_device_and_the_env_flag(monkeypatch):
    """Triton on CUDA unless SHADOWKV_LAB_KERNELS=0; torch elsewhere; any other value is an error."""
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.delenv("SHADOWKV_LAB_KERNELS", raising=False)
    assert (default_backend(cuda), default_backend(cpu)) == ("triton", "torch")
    monkeypatch.setenv("SHADOWKV_LAB_KERNELS", "0")
    assert default_backend(cuda) == "torch"
    monkeypatch.setenv("SHADOWKV_LAB_KERNELS", "yes")
    with pytest.raises(ValueError, match="SHADOWKV_LAB_KERNELS='yes': allowed are 1"):
        default_backend(cuda)


def test_default_graphs_follow_the_device_backend_and_the_env_flag(monkeypatch):
    """Graphs on CUDA with Triton unless SHADOWKV_LAB_GRAPHS=0; never on CPU or torch; any other value is an error."""
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    monkeypatch.delenv("SHADOWKV_LAB_GRAPHS", raising=False)
    assert [default_graphs(cuda, "triton"), default_graphs(cuda, "torch"), default_graphs(cpu, "triton")] == [True, False, False]
    monkeypatch.setenv("SHADOWKV_LAB_GRAPHS", "0")
    assert not default_graphs(cuda, "triton")
    monkeypatch.setenv("SHADOWKV_LAB_GRAPHS", "no")
    with pytest.raises(ValueError, match="SHADOWKV_LAB_GRAPHS='no': allowed are 1"):
        default_graphs(cuda, "triton")


def _layer(cfg, k_pre, v, rope, G):
    H, L, D = k_pre.shape
    ctx = LayerContext(rope=rope, scaling=D ** -0.5, n_q_heads=H * G, compute_device=torch.device(DEV),
                       offload_device=torch.device("cpu"), pin=DEV == "cuda")
    return SparseLayer(cfg, k_pre, rope(k_pre, torch.arange(L, device=DEV).expand(H, L)), v, ctx)


def _rope(D, n=1024):
    inv = 1.0 / (1e6 ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    tab = rope_table_from_freqs(inv.to(DEV), n, torch.bfloat16)
    return lambda x, pos: torch_rope(x, pos, tab)


@pytest.mark.parametrize("dtype,cfg,needle", [
    (torch.float32, dataclasses.replace(PRESETS["yakv"], **SMALL), "model dtype torch.float32"),
    (torch.bfloat16, dataclasses.replace(PRESETS["yakv_exactkv"], value_format="nvfp4", **SMALL), "values format 'nvfp4'"),
])
def test_uncovered_layout_warns_and_runs_torch(monkeypatch, dtype, cfg, needle):
    monkeypatch.setattr(batched, "_WARNED", set())  # warned once per process: an earlier test may have used it up
    H, G, D, L = 2, 2, 64, 300
    g = torch.Generator().manual_seed(1)
    layer = _layer(cfg, torch.randn(H, L, D, generator=g).to(DEV, dtype), torch.randn(H, L, D, generator=g).to(DEV, dtype),
                   _rope(D), G)
    assert needle in triton_reason(layer)
    with pytest.warns(UserWarning, match=f"{needle}.*torch backend"):
        group = SparseGroup([layer], RowState([0], H, DEV), capacity=2, backend="triton")
    assert group.backend == "torch"


@torch.inference_mode()
def test_higgs_massive_channels_select_and_gather_like_the_reference():
    """YAKV (HIGGS landmarks, HIGGS token-row keys/values) on keys and queries with a few massive channels, like
    Qwen2.5's (|k| ~ 390, |q| ~ 40 in layer 0): the Triton step must select exactly the per-row reference's tokens and
    gather bit-identical keys and values. The small channels of such keys are cancellations of large Hadamard terms,
    so a dequantization that sums in another order than the reference's butterfly flips bf16 roundings (1 ulp = 2.0
    on a massive channel) and top-k ties; on Qwen2.5-Coder-1.5B that moved the next logits by up to 12.6."""
    cfg = dataclasses.replace(PRESETS["yakv"], sparse_budget=48)
    H, G, D, L = 2, 6, 128, 400
    gen = torch.Generator().manual_seed(3)
    rope = _rope(D)
    massive = torch.zeros(D)
    massive[[D // 2 - 1, D - 1, D // 2 - 3]] = torch.tensor([300.0, -250.0, 120.0])  # low-frequency channels
    k_pre = (massive + torch.randn(H, L, 8, generator=gen) @ torch.randn(8, D, generator=gen)
             + torch.randn(H, L, D, generator=gen)).to(DEV, torch.bfloat16)
    v = torch.randn(H, L, D, generator=gen).to(DEV, torch.bfloat16)
    layer = _layer(cfg, k_pre, v, rope, G)
    assert triton_reason(layer) is None
    state = RowState([0], H, DEV)
    group = SparseGroup([layer], state, capacity=4, backend="triton")
    assert group.backend == "triton"
    gk, gv = [], []
    for step in range(3):
        p = torch.full((H, 1), L + step, device=DEV)
        q_raw = massive / 8 + 2 * torch.randn(H * G, D, generator=gen)
        qg = rope(q_raw.to(DEV, torch.bfloat16).view(H, G, D), p.expand(H, G))
        ref_pos = layer.select(qg)
        pos = group.select(qg.unsqueeze(0))[0]
        for h in range(H):
            assert set(pos[h].tolist()) == set(ref_pos[h].tolist()), (step, h)
        k_buf, v_buf = group.fetch(pos.unsqueeze(0))
        rk, rv = layer.selected_kv(pos)
        assert torch.equal(k_buf, rk) and torch.equal(v_buf, rv), step
        k_new = torch.randn(H, 1, D, generator=gen).to(DEV, torch.bfloat16)
        v_new = torch.randn(H, 1, D, generator=gen).to(DEV, torch.bfloat16)
        gk.append(rope(k_new, p))
        gv.append(v_new)
        out = group.step(qg.reshape(1, H * G, D), k_new.view(1, H, D), gk[-1].view(1, H, D), v_new.view(1, H, D))
        state.advance([True])
        sk, sv = layer.selected_kv(ref_pos)
        ref = attend(qg, torch.cat([layer.out_k, layer.local_k, sk] + gk, 1),
                     torch.cat([layer.out_v, layer.local_v, sv] + gv, 1), layer.ctx.scaling).view(-1, D)
        assert float((out[0].float() - ref.float()).abs().max()) <= 0.0625, step  # bf16 rounding of the attention

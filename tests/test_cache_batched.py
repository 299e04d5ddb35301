"""The stacked decode step (cache.batched) against the per-row reference decode: same tokens, same logits."""

import dataclasses

import pytest
import torch

from shadowkv_lab import OffloadConfig
from shadowkv_lab.cache.batched import BatchPlan, attend_masked
from shadowkv_lab.cache.layer import attend
from shadowkv_lab.cache.presets import PRESETS
from shadowkv_lab.generation import build_cache, decode, prefill
from shadowkv_lab.testing import TINY_ARCHS, tiny_model

# Every preset family, sized for ~200-400-token prompts; with different prompt lengths the rows of one method have
# different numbers of candidates, local-window remainders and budgets, so padding and masks are exercised.
SMALL = dict(sparse_budget=48)
METHODS = [
    OffloadConfig(name="full", kind="full"),
    dataclasses.replace(PRESETS["shadowkv"], rank=8, local_budget=16, outlier_chunks=3, **SMALL),
    dataclasses.replace(PRESETS["shadowkv_fullkeys"], local_budget=16, outlier_chunks=3, sparse_budget=0.15),
    dataclasses.replace(PRESETS["shadowkv_serving"], rank=8, local_budget=16, outlier_chunks=3, **SMALL),
    dataclasses.replace(PRESETS["shadowkv_fullkeys"], name="bf16_scores", score_precision="bf16", local_budget=16,
                        outlier_chunks=2, **SMALL),
    dataclasses.replace(PRESETS["yakv"], local_budget=16, landmark_format="higgs-2-16", key_format="higgs-2-16",
                        value_format="higgs-2-16", **SMALL),
    dataclasses.replace(PRESETS["yakv_exactkv"], local_budget=16, landmark_format="fp8", value_format="fp8", **SMALL),
    dataclasses.replace(PRESETS["yakv_lut"], local_budget=16, landmark_format="higgs-2-16", key_format="higgs-2-16",
                        value_format="higgs-2-16", **SMALL),
    dataclasses.replace(PRESETS["oracle"], local_budget=16, outlier_chunks=3, **SMALL),
    dataclasses.replace(PRESETS["shadowkv_oracle"], rank=8, local_budget=16, outlier_chunks=3, sparse_budget=0.2),
    dataclasses.replace(PRESETS["yakv_exactkv"], name="head_major", local_budget=16, key_format="higgs-2-16",
                        key_group=16, **SMALL),
]


def _run(model, states, cfgs, caps, batched):
    caches, firsts = [], []
    for st in states:
        for cfg in cfgs:
            caches.append(build_cache(model, st, cfg))
            firsts.append(int(st.first_logits.argmax()))
    logits = {i: [] for i in range(len(caches))}

    def hook(rows, lg):
        for j, i in enumerate(rows):
            logits[i].append(lg[j].float().clone())

    caps = [caps[i % len(caps)] for i in range(len(caches))]
    outs = decode(model, caches, firsts, caps, stop_ids=set(), on_logits=hook, batched=batched)
    return outs, logits, caches


@pytest.mark.parametrize("arch", TINY_ARCHS)
@torch.inference_mode()
def test_stacked_equals_per_row(arch):
    model, _ = tiny_model(arch, seed=3)
    g = torch.Generator().manual_seed(4)
    # 30 tokens leave no candidate chunk: those rows fall back to exact attention (stacked as ExactGroups).
    states = [prefill(model, torch.randint(3, 384, (n,), generator=g)) for n in (213, 330, 30, 407)]
    caps = [12, 5, 9, 12, 3]  # ragged stopping: groups are re-stacked as rows finish
    ref, ref_logits, ref_caches = _run(model, states, METHODS, caps, batched=False)
    got, got_logits, got_caches = _run(model, states, METHODS, caps, batched=True)
    for i, (a, b) in enumerate(zip(ref, got)):
        name = METHODS[i % len(METHODS)].name
        assert a.token_ids == b.token_ids, (i, name)
        assert a.finish_reason == b.finish_reason
        diff = (torch.stack(ref_logits[i]) - torch.stack(got_logits[i])).abs().max().item()
        assert diff < 1e-4, (i, name, diff)
    for rc, gc in zip(ref_caches, got_caches):
        rr = rc.memory_report().by_category() if hasattr(rc.memory_report(), "by_category") else None
        ra = {(r[0], r[1], r[2]): (r[3], r[4]) for r in rc.memory_report().rows if r[1] != "generated"}
        ga = {(r[0], r[1], r[2]): (r[3], r[4]) for r in gc.memory_report().rows if r[1] != "generated"}
        assert ra == ga, rr
        for lr, lg in zip(rc.layers, gc.layers):  # generated tokens handed back to the rows, exactly
            assert lr.gen.length == lg.gen.length == rc.generated
            assert torch.allclose(lr.gen.view()[0], lg.gen.view()[0], atol=1e-5)
            if getattr(lr, "last_selection", None) is not None and lr.last_selection.numel():
                assert sorted(lr.last_selection.flatten().tolist()) == sorted(lg.last_selection.flatten().tolist())


@torch.inference_mode()
def test_rows_continue_per_row_after_stacked_decode():
    """After a stacked decode the rows hold views of the stacks: a second, per-row decode continues exactly."""
    model, _ = tiny_model("qwen2", seed=5)
    st = prefill(model, torch.randint(3, 384, (301,), generator=torch.Generator().manual_seed(5)))
    cfg = METHODS[1]
    a, b = build_cache(model, st, cfg), build_cache(model, st, cfg)
    first = int(st.first_logits.argmax())
    o1 = decode(model, [a], [first], 6, stop_ids=set(), batched=False)[0].token_ids
    o1 += decode(model, [a], [o1[-1]], 6, stop_ids=set(), batched=False)[0].token_ids[1:]
    p1 = decode(model, [b], [first], 6, stop_ids=set(), batched=True)[0].token_ids
    p1 += decode(model, [b], [p1[-1]], 6, stop_ids=set(), batched=False)[0].token_ids[1:]
    assert o1 == p1


@torch.inference_mode()
def test_recorded_rows_run_the_stacked_step():
    """Recorded rows share the stack with unrecorded rows of their method; tokens and records match the per-row
    reference (the recorder sees its row's slice)."""
    model, _ = tiny_model("llama", seed=6)
    st = prefill(model, torch.randint(3, 384, (260,), generator=torch.Generator().manual_seed(6)))
    cfgs = [METHODS[1], dataclasses.replace(PRESETS["oracle"], local_budget=16, outlier_chunks=3, **SMALL), METHODS[0],
            METHODS[1]]
    first = int(st.first_logits.argmax())

    def run(batched):
        caches = [build_cache(model, st, c, record=(i in (1, 3))) for i, c in enumerate(cfgs)]
        outs = decode(model, caches, [first] * len(cfgs), 7, stop_ids=set(), batched=batched)
        return [o.token_ids for o in outs], caches

    ref, ref_caches = run(False)
    caches = [build_cache(model, st, c, record=(i in (1, 3))) for i, c in enumerate(cfgs)]
    plan = BatchPlan(caches)
    plan.set_active([0, 1, 2, 3])
    assert sorted(r for g in plan.groups for r in g.rows) == [0, 1, 2, 3]
    assert [0, 3] in [g.rows for g in plan.groups]  # a recorded row stacks with an unrecorded row of its method
    plan.close()
    got, got_caches = run(True)
    assert got == ref
    for i in (1, 3):
        a, b = ref_caches[i].recorder.frame(), got_caches[i].recorder.frame()
        assert len(a) == len(b) > 0
        assert (a[["step", "layer", "head", "budget"]].values == b[["step", "layer", "head", "budget"]].values).all()
        for col in ("recall", "mass", "err_selection", "err_approx"):
            assert (a[col] - b[col]).abs().max() < 1e-4, col


@pytest.mark.parametrize("cfg", [METHODS[1], next(m for m in METHODS if m.selection == "oracle")],
                         ids=["landmarks", "oracle"])
@torch.inference_mode()
def test_a_wholly_recorded_group_records_from_its_stack_as_rows_finish(cfg):
    """Rows all recorded stack their exact prompt K/V once per group (SparseGroup.exact) and record from that stack:
    as rows finish at ragged caps (the recorded rows become a non-contiguous subset, then the group re-stacks),
    every row's statistics match the per-row reference and its tokens are unchanged."""
    model, _ = tiny_model("llama", seed=6)
    g = torch.Generator().manual_seed(9)
    states = [prefill(model, torch.randint(3, 384, (n,), generator=g)) for n in (260, 301, 233, 280)]
    caps = [2, 8, 5, 6]  # row 0 first: rows 1-3 record as a subset of the stack; then the group re-stacks

    def run(batched):
        caches = [build_cache(model, st, cfg, record=True) for st in states]
        firsts = [int(st.first_logits.argmax()) for st in states]
        outs = decode(model, caches, firsts, caps, stop_ids=set(), batched=batched)
        return [o.token_ids for o in outs], [c.recorder.frame() for c in caches]

    caches = [build_cache(model, st, cfg, record=True) for st in states]
    plan = BatchPlan(caches)
    plan.set_active([0, 1, 2, 3])
    assert len(plan.groups) == 1 and all(layer.exact is not None for layer in plan.groups[0].layers)
    plan.close()
    (ref_tokens, ref_frames), (tokens, frames) = run(False), run(True)
    assert tokens == ref_tokens
    for a, b, cap in zip(ref_frames, frames, caps):
        assert len(a) == len(b) == (cap - 1) * model.config.num_hidden_layers * model.config.num_key_value_heads
        assert (a[["step", "layer", "head", "budget"]].values == b[["step", "layer", "head", "budget"]].values).all()
        for col in ("recall", "mass", "err_selection", "err_approx", "mean_selected_position"):
            assert (a[col] - b[col]).abs().max() < 1e-4, col


@torch.inference_mode()
def test_recorder_flushes_give_the_same_frame(monkeypatch):
    """The recorder keeps its statistics on the device and copies them to the host in batches: flushing after every
    few entries (several flushes mid-decode) and once at the end give the same frame, in (step, layer, head) order."""
    from shadowkv_lab.cache.record import AttentionRecorder

    model, _ = tiny_model("llama", seed=7)
    st = prefill(model, torch.randint(3, 384, (260,), generator=torch.Generator().manual_seed(7)))
    first = int(st.first_logits.argmax())

    def frame(every):
        monkeypatch.setattr(AttentionRecorder, "FLUSH_EVERY", every)
        cache = build_cache(model, st, METHODS[1], record=True)
        decode(model, [cache], [first], 6, stop_ids=set())
        assert every > 1000 or len(cache.recorder._pending) < every  # flushed on the way
        return cache.recorder.frame()

    a, b = frame(3), frame(AttentionRecorder.FLUSH_EVERY)
    cfg = model.config
    assert len(a) == 5 * cfg.num_hidden_layers * cfg.num_key_value_heads > 0  # decode steps x layers x KV heads
    assert a.equals(b)
    assert list(a.itertuples(index=False, name=None)) == sorted(a.itertuples(index=False, name=None),
                                                                key=lambda r: (r[1], r[2], r[3]))


def test_attend_masked_matches_attend_on_each_row():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, 2, 4, 16, generator=g)
    k, v = torch.randn(3, 2, 10, 16, generator=g), torch.randn(3, 2, 10, 16, generator=g)
    lens = [10, 4, 7]
    valid = torch.arange(10).unsqueeze(0) < torch.tensor(lens).unsqueeze(1)
    out = attend_masked(q, [(k[:, :, :3], v[:, :, :3], valid[:, :3]), (k[:, :, 3:], v[:, :, 3:], valid[:, 3:])], 0.25)
    for b, n in enumerate(lens):
        assert torch.allclose(out[b], attend(q[b], k[b, :, :n], v[b, :, :n], 0.25), atol=1e-6)


@pytest.mark.parametrize("name", ["shadowkv", "shadowkv_fullkeys", "yakv", "oracle"])
@torch.inference_mode()
def test_built_layers_own_exactly_their_storage(name):
    """Every tensor a freshly built layer keeps is a compact tensor, never a view into something larger (a view of
    the prefill or of a nonzero() result keeps hidden bytes alive that the memory report cannot see)."""
    model, _ = tiny_model("qwen2", seed=7)
    st = prefill(model, torch.randint(3, 384, (500,), generator=torch.Generator().manual_seed(7)))
    cfg = dataclasses.replace(PRESETS[name], local_budget=16, outlier_chunks=min(PRESETS[name].outlier_chunks, 3), **SMALL)
    lay = build_cache(model, st, cfg).layers[0]
    tensors = [v for v in vars(lay).values() if torch.is_tensor(v)]
    for store in (lay.values, getattr(lay, "keys", None)):
        if store is not None:
            tensors += [store.data] if store.quantizer is None else list(store.data.rows.values())
    assert len(tensors) >= 6
    for t in tensors:
        assert t.untyped_storage().nbytes() == t.nbytes, (name, t.shape)


def _row_stats_reference(layer, qg, positions, out, gk, gv):
    """The recorder's statistics for one row, restated on the row's own unpadded tensors (cache/record.py defines
    them): (5, H) recall, mass, err_selection, err_approx, mean_selected_position."""
    from shadowkv_lab.selection import topk_indices

    H, P = layer.H, layer.prefix
    K = torch.cat([layer.exact_k, layer.local_k, gk], 1).float()
    V = torch.cat([layer.exact_v, layer.local_v, gv], 1).float()
    N = K.shape[1]
    p = torch.softmax(qg.float() @ K.transpose(1, 2) * layer.ctx.scaling, -1)  # (H, G, N)
    o_exact = p @ V
    attended = torch.zeros(H, N, dtype=torch.bool)
    attended[:, P:] = True
    attended.scatter_(1, layer.out_pos, True)
    attended.scatter_(1, positions, True)
    cand = layer._chunk_positions(layer.cand_ids)
    k = min(positions.shape[1], cand.shape[1])
    oracle = torch.gather(cand, 1, topk_indices(torch.gather(p.max(1).values, 1, cand), k))
    chosen = torch.zeros(H, N, dtype=torch.bool)
    chosen.scatter_(1, positions, True)
    recall = torch.gather(chosen, 1, oracle).float().mean(1) if k else torch.ones(H)
    mass = (p * attended[:, None]).sum(-1).mean(-1)
    m = p * attended[:, None]
    o_sel = (m / m.sum(-1, keepdim=True)) @ V
    norm = o_exact.flatten(1).norm(dim=1)
    return torch.stack([recall, mass, (o_sel - o_exact).flatten(1).norm(dim=1) / norm,
                        (out.float() - o_sel).flatten(1).norm(dim=1) / norm,
                        positions.float().mean(1) / layer.L])


@torch.inference_mode()
def test_recording_rows_together_gives_each_rows_own_statistics():
    """record_rows pads rows of different prompt, window, selection and generated lengths into one computation; each
    row's statistics equal those restated on its own tensors."""
    from shadowkv_lab.cache.record import AttentionRecorder, record_rows

    model, _ = tiny_model("llama", seed=7)
    g = torch.Generator().manual_seed(8)
    cfg = dataclasses.replace(PRESETS["shadowkv_fullkeys"], local_budget=16, outlier_chunks=2, sparse_budget=0.2)
    layers = [build_cache(model, prefill(model, torch.randint(3, 384, (n,), generator=g)), cfg, record=True).layers[1]
              for n in (260, 411, 333)]
    H, d = layers[0].H, layers[0].d
    G = model.config.num_attention_heads // model.config.num_key_value_heads
    sel_lens, gen_lens = [24, 40, 0], [1, 5, 3]
    qg, out = torch.randn(3, H, G, d, generator=g), torch.randn(3, H, G, d, generator=g)
    gk, gv = torch.randn(3, H, 6, d, generator=g), torch.randn(3, H, 6, d, generator=g)
    positions = torch.stack([torch.stack([torch.randperm(lay.prefix, generator=g)[:40] for _ in range(H)])
                             for lay in layers])
    recs = [AttentionRecorder() for _ in layers]
    record_rows(recs, layers, qg, positions, sel_lens, out, gk.to(layers[0].exact_k.dtype),
                gv.to(layers[0].exact_v.dtype), gen_lens)
    for r, (rec, lay) in enumerate(zip(recs, layers)):
        n, t = sel_lens[r], gen_lens[r]
        want = _row_stats_reference(lay, qg[r], positions[r, :, :n], out[r], gk[r, :, :t].to(lay.exact_k.dtype),
                                    gv[r, :, :t].to(lay.exact_v.dtype))
        got = rec.frame()
        assert len(got) == H and (got.budget == n).all()
        cols = ["recall", "mass", "err_selection", "err_approx", "mean_selected_position"]
        torch.testing.assert_close(torch.tensor(got[cols].values.T, dtype=torch.float32), want.float(),
                                   rtol=1e-4, atol=1e-5, equal_nan=True)

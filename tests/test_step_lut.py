"""landmark_scoring="codes" (preset yakv_lut): the stacked step scores the HIGGS landmark codes through per-query lookup
tables on the triton backend (kernels/scoring_lut.py, nothing dequantized) and the same q . l on fp32 dequantized
landmarks on the torch backend. Config validation and hashes, the step's scores against both references, the
selection against the reference's dequantized scoring, and the memory estimate. Batch invariance: on the kernels in
tests/test_step_triton.py, on the torch backend in test_batch_invariance.py; stacked == per-row: test_cache_batched.py.

CPU: Triton interpreter (set before triton is imported). On a GPU machine run with TRITON_INTERPRET=0."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from shadowkv_lab import OffloadConfig  # noqa: E402
from shadowkv_lab.cache import presets as P  # noqa: E402
from shadowkv_lab.cache.batched import RowState, SparseGroup, triton_reason  # noqa: E402
from shadowkv_lab.cache.layer import LayerContext, SparseLayer  # noqa: E402
from shadowkv_lab.cache.memory import row_footprint_bytes, stacked_landmark_bytes  # noqa: E402
from shadowkv_lab.cache.presets import PRESETS  # noqa: E402
from shadowkv_lab.kernels.common import rope_table_from_freqs, torch_rope  # noqa: E402
from shadowkv_lab.kernels.scoring_lut import higgs_lut, landmark_scores_lut_ref  # noqa: E402
from shadowkv_lab.quant import load_grid  # noqa: E402

DEV = "cuda" if os.environ["TRITON_INTERPRET"] == "0" and torch.cuda.is_available() else "cpu"
SMALL = dict(local_budget=16, sparse_budget=48)


# ---------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize("changes,needle", [
    (dict(landmark_scoring="lut"), r"landmark_scoring='lut': allowed \('dequantized', 'codes'\)"),
    (dict(landmark_format="native"), r"needs a HIGGS landmark_format .*got landmark_format='native'"),
    (dict(landmark_format="nvfp4"), r"needs a HIGGS landmark_format .*got landmark_format='nvfp4'"),
    (dict(landmark_format=P.RESIDUAL_LANDMARKS), r"needs a HIGGS landmark_format .*got landmark_format='residual:"),
    (dict(landmark_format="higgs-6-4096"), r"needs uint8 codes \(a grid of n <= 256 points\).*n = 4096"),
    (dict(landmark_group=64), r"needs landmark_group=None .*got landmark_group=64"),
    (dict(landmark_offset="mean"), r"needs landmark_offset='none' .*got landmark_offset='mean'"),
    (dict(selection="oracle"), r"needs selection='landmarks' .*got selection='oracle'"),
])
def test_codes_scoring_is_validated(changes, needle):
    with pytest.raises(ValueError, match=needle):
        PRESETS["yakv_lut"].replace(**changes)


def test_codes_scoring_allows_every_higgs_rule():
    for changes in (dict(landmark_format="higgs-4-256:signs"), dict(landmark_format="higgs-2-16"),
                    dict(score_precision="fp32"), dict(scoring="mean_dot"), dict(chunk_size=4, local_budget=64)):
        assert PRESETS["yakv_lut"].replace(**changes).landmark_scoring == "codes"
    assert OffloadConfig().landmark_scoring == "dequantized"


def test_default_leaves_dicts_and_hashes_unchanged():
    """At its default the field is left out of to_dict, so every config from before it keeps its hash and rows."""
    for name, cfg in PRESETS.items():
        assert ("landmark_scoring" in cfg.to_dict()) == (cfg.landmark_scoring == "codes"), name
        assert (cfg.landmark_scoring == "codes") == name.endswith("_lut"), name
    assert PRESETS["yakv"].config_hash() == "01dfe5fd0f97"  # pinned in tests/test_presets.py too
    lut = PRESETS["yakv_lut"]
    assert lut.to_dict()["landmark_scoring"] == "codes" and lut.config_hash() != PRESETS["yakv"].config_hash()
    assert OffloadConfig.from_dict(lut.to_dict()) == lut
    assert lut.replace(landmark_scoring="dequantized").config_hash() == PRESETS["yakv"].config_hash()
    # derived names tag the field whichever side holds its default
    assert P.variant("yakv", landmark_scoring="codes").name == "yakv_lut"
    assert P.variant("yakv_lut", landmark_scoring="dequantized").name == "yakv_lut_lm-dequantized"
    assert P.variant("yakv", key_offset="selective").name == "yakv_k-centred"
    assert P.variant("yakv", key_offset="mean").name == "yakv_k-offset-mean"


# ---------------------------------------------------------------------------------------------- the step's scores
def _rope(D, n=2048):
    inv = 1.0 / (1e6 ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    tab = rope_table_from_freqs(inv.to(DEV), n, torch.bfloat16)
    return lambda x, pos: torch_rope(x, pos, tab)


def _layers(cfg, lengths, H=2, G=3, D=64, seed=0):
    """One SparseLayer per prompt length on random bf16 keys (low rank + noise) and values."""
    g = torch.Generator().manual_seed(seed)
    rope = _rope(D)
    ctx = LayerContext(rope=rope, scaling=D ** -0.5, n_q_heads=H * G, compute_device=torch.device(DEV),
                       offload_device=torch.device("cpu"), pin=DEV == "cuda")
    out = []
    for L in lengths:
        k_pre = (torch.randn(H, L, 8, generator=g) @ torch.randn(8, D, generator=g) + torch.randn(H, L, D, generator=g))
        k_pre, v = k_pre.to(DEV, torch.bfloat16), torch.randn(H, L, D, generator=g).to(DEV, torch.bfloat16)
        out.append(SparseLayer(cfg, k_pre, rope(k_pre, torch.arange(L, device=DEV).expand(H, L)), v, ctx))
    return out


def _query(B, H, G, D, seed):
    return (3 * torch.randn(B, H, G, D, generator=torch.Generator().manual_seed(seed))).to(DEV, torch.bfloat16)


@pytest.mark.parametrize("changes", [
    dict(),  # the preset: softmax_max, bf16 probabilities
    dict(score_precision="fp32"),
    dict(scoring="mean_dot"),
    dict(landmark_format="higgs-4-256:signs", score_precision="fp32"),
])
@torch.inference_mode()
def test_triton_step_scores_the_codes(changes):
    """Two ragged rows (300 and 211 tokens). The triton step holds no dequantized landmark, its rows' codes are views
    of its stack, and its scores equal landmark_scores_lut_ref on each row's own codes (fp32 rounding; with bf16
    probabilities, one bf16 ulp on < 1% of the landmarks) and the torch backend's fp32 dequantized scoring; the
    padding scores -inf."""
    cfg = PRESETS["yakv_lut"].replace(**changes, **SMALL)
    H, G, D = 2, 3, 64
    layers = _layers(cfg, (300, 211))
    assert triton_reason(layers[0]) is None
    mem_before = [lay.memory() for lay in layers]
    group = SparseGroup(layers, RowState([0, 0], H, DEV), capacity=2, backend="triton")
    assert group.backend == "triton" and group.lm is None
    assert [lay.memory() for lay in layers] == mem_before  # the rows' codes moved into the stack, not copied
    base = group.codes.untyped_storage().data_ptr()
    assert all(t.rows["codes"].untyped_storage().data_ptr() == base for lay in layers for t in lay.landmarks)
    qg = _query(2, H, G, D, seed=1)
    got = group.scores(qg).view(2, H, -1)
    ref_group = SparseGroup(layers, RowState([0, 0], H, DEV), capacity=2, backend="torch")
    assert ref_group.lm.dtype == torch.float32  # the torch backend: fp32 landmarks, never rounded
    torch_scores = ref_group.scores(qg)
    q0 = layers[0].landmark_q
    signs = q0._sign_vec(DEV) if q0.signs else None
    bf16 = cfg.score_precision == "bf16" and cfg.scoring == "softmax_max"
    for b, lay in enumerate(layers):
        M = lay.M
        assert torch.isinf(got[b, :, M:]).all() and torch.isinf(torch_scores[b, :, M:]).all()
        codes = torch.stack([t.rows["codes"] for t in lay.landmarks])  # (H, M, d/p)
        scales = torch.stack([t.rows["scales"][:, 0] for t in lay.landmarks])  # (H, M)
        lut = higgs_lut(qg[b], load_grid(q0.p, q0.n, DEV), cfg.scoring, signs)
        ref = landmark_scores_lut_ref(codes, scales, lut, lay.ctx.scaling, cfg.scoring, bf16)
        for other in (ref, torch_scores[b, :, :M]):
            a = got[b, :, :M]
            assert torch.isfinite(a).all()
            atol = 2e-6 * float(other.abs().max())  # measured: <= 1e-6 (fp32 rounding of two summation orders)
            if bf16:  # one bf16 ulp where the fp32 probabilities straddle a rounding boundary, otherwise equal
                assert float((a != other).float().mean()) < 0.01
                torch.testing.assert_close(a, other, rtol=1 / 128, atol=atol)
            else:
                torch.testing.assert_close(a, other, rtol=1e-5, atol=atol)


# ---------------------------------------------------------------------------------------------- selection
def _recall(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of a's selected positions (H, k) that b selected too, head by head."""
    return sum(len(set(x.tolist()) & set(y.tolist())) for x, y in zip(a, b)) / a.numel()


@torch.inference_mode()
def test_codes_select_what_the_dequantized_scoring_selects():
    """The same keys quantized once: top-32 of ~1,000 landmarks (3.125%) by the codes (triton: the lookup table) vs
    by the reference scoring of the bf16 dequantized landmarks (yakv), 4 queries x 2 heads, head_dim 128. The gap is
    the reference's rounding of each landmark to bf16 (kernels/scoring_lut.py). Measured recall: 0.996 (one of the 64
    selected tokens differs on one query, 0.984; the others 1.0); over 3 key seeds x 4 queries, 0.9987."""
    H, G, D, L = 2, 4, 128, 1100
    ref_cfg = PRESETS["yakv"].replace(local_budget=64, sparse_budget=32)
    ref_layer = _layers(ref_cfg, (L,), H, G, D, seed=5)[0]
    lut_layer = _layers(ref_cfg.replace(landmark_scoring="codes"), (L,), H, G, D, seed=5)[0]
    assert all(torch.equal(a.rows["codes"], b.rows["codes"]) for a, b in zip(ref_layer.landmarks, lut_layer.landmarks))
    ref = SparseGroup([ref_layer], RowState([0], H, DEV), capacity=2, backend="triton")
    lut = SparseGroup([lut_layer], RowState([0], H, DEV), capacity=2, backend="triton")
    recalls = []
    for seed in range(4):
        qg = _query(1, H, G, D, seed=10 + seed)
        pos_ref, pos_lut = ref.select(qg)[0], lut.select(qg)[0]
        assert pos_lut.shape == pos_ref.shape == (H, 32)
        assert _recall(pos_ref, ref_layer.select(qg[0])) == 1.0  # the kernels' reference scoring is the per-row one
        recalls.append(_recall(pos_lut, pos_ref))
    assert min(recalls) >= 0.9 and sum(recalls) / len(recalls) >= 0.95, recalls


# ---------------------------------------------------------------------------------------------- memory
def test_footprint_counts_what_the_step_holds():
    """The stacked step's scoring bytes per layer: the dequantized model-dtype copy (the reference), nothing but the
    lookup tables and logits when the kernels score the codes, fp32 landmarks on the torch backend; the runner's
    estimate follows, and the method's storage (analytic bytes per token) does not depend on the scoring."""
    from shadowkv_lab.cache.memory import analytic_bytes_per_token

    yakv, lut = PRESETS["yakv"], PRESETS["yakv_lut"]
    H, d, M, e = 8, 128, 100_000, 2
    kw = dict(n_kv_heads=H, head_dim=d, n_units=M, dtype_bytes=e, n_q_heads=32)
    assert stacked_landmark_bytes(yakv, **kw) == H * M * d * e
    assert stacked_landmark_bytes(lut, backend="triton", **kw) == H * 32 * 256 * 4 * 4 + H * 4 * M * 4
    assert stacked_landmark_bytes(lut, backend="torch", **kw) == stacked_landmark_bytes(lut, **kw) == H * M * d * 4
    shape = dict(n_layers=32, n_kv_heads=H, head_dim=d, prompt_len=131072, new_tokens=512, dtype_bytes=e, n_q_heads=32)
    on_gpu = row_footprint_bytes(lut, backend="triton", **shape)
    assert on_gpu < row_footprint_bytes(yakv, backend="triton", **shape) < row_footprint_bytes(lut, backend="torch", **shape)
    assert analytic_bytes_per_token(lut, H, d, 131072) == analytic_bytes_per_token(yakv, H, d, 131072)

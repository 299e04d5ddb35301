"""The method registry: one resolver, preset identities pinned, sweep names derived from the changed fields."""

from __future__ import annotations

import pytest
import torch

from shadowkv_lab import OffloadConfig, get_preset, resolve
from shadowkv_lab.cache import presets as P

# config_hash of every published preset: the results stores are keyed by it, so it must never move.
PINNED_HASHES = {
    "full": "3e7ba05fda5d", "shadowkv": "8d9df52c5f92", "shadowkv_scaled": "e118db39bca5",
    "shadowkv_fullkeys": "6db7be782e45", "shadowkv_oracle": "f03c950a8f46", "oracle": "0eef49ef0235",
    "shadowkv_serving": "a0d346533a3d", "yakv": "01dfe5fd0f97", "yakv_residual": "1d1c9a96439e",
    "yakv_exactkv": "72d6a4930453", "lm_bf16_c1": "32d207b099ad", "lm_fp8_c1": "a56fcb0caae4",
    "lm_nvfp4_c1": "e822cfcba7e0", "lm_higgs4_c1": "7c5446708fda", "lm_higgs3_c1": "d42adf4a5945",
    "lm_higgs2_c1": "72d6a4930453", "lm_higgs1_c1": "d2dbf278e69e", "lm_residual_c1": "49d68c53ea57",
    "yakv_lut": "509ac74e1691",
}


@pytest.mark.parametrize("name", sorted(PINNED_HASHES))
def test_published_presets_keep_name_and_hash(name):
    cfg = resolve(name)
    assert cfg.name == name and cfg.config_hash() == PINNED_HASHES[name]


def test_sweep_builders_keep_their_hashes():
    assert P.chunk_size_ablation(4).config_hash() == "33ca3223ab1a"
    assert P.key_compression(64).config_hash() == "2721a95cddfc"
    assert P.key_compression("fp8").config_hash() == "1994ff9f3c8b"


def test_resolve_is_the_one_registry():
    cfg = OffloadConfig(name="mine", rank=-1)
    assert resolve(cfg) is cfg and resolve("yakv") is P.PRESETS["yakv"] and get_preset is resolve
    with pytest.raises(ValueError, match="unknown method 'nope'.*yakv"):
        resolve("nope")
    with pytest.raises(TypeError, match="preset name or an OffloadConfig"):
        resolve(3)


def test_every_entry_point_uses_resolve(monkeypatch):
    from shadowkv_lab import generation, runner, runner_cli, workbook

    seen = []
    real = P.resolve

    def spy(m):
        seen.append(m)
        return real(m)

    for mod, attr in ((generation, "resolve"), (runner, "resolve"), (workbook, "resolve_method")):
        monkeypatch.setattr(mod, attr, spy)
    monkeypatch.setattr(P, "resolve", spy)
    assert [c.name for c in runner.resolve_methods(["full", "yakv"])] == ["full", "yakv"]
    assert [c.name for c in workbook.as_configs({"a": "oracle"})] == ["oracle"]
    assert runner_cli.check_methods(["shadowkv"]) == ["shadowkv"]
    assert seen == ["full", "yakv", "oracle", "shadowkv"]


def test_check_methods_names_every_bad_one():
    from shadowkv_lab.runner_cli import check_methods

    with pytest.raises(ValueError, match=r"unknown method\(s\) a, b; known presets: full"):
        check_methods(["full", "a", "b"])


@pytest.mark.parametrize("build,name", [
    (lambda: P.key_compression(64), "shadowkv_r64"),
    (lambda: P.key_compression("exact"), "shadowkv_fullkeys"),
    (lambda: P.key_compression("fp8"), "shadowkv_fullkeys_k-fp8"),
    (lambda: P.key_compression("higgs4_centred"), "shadowkv_fullkeys_k-higgs4_k-centred"),
    (lambda: P.chunk_size_ablation(4), "yakv_exactkv_c4_lm-bf16"),
    (lambda: P.landmark_precision("higgs2"), "yakv_exactkv"),
    (lambda: P.landmark_precision("residual", chunk_size=2), "yakv_exactkv_c2_lm-residual"),
    (lambda: P.landmark_precision("nvfp4", sparse_budget=0.0625), "yakv_exactkv_lm-nvfp4@0.0625"),
    (lambda: P.with_budget(resolve("yakv"), 1024), "yakv@1024t"),
    (lambda: P.variant("shadowkv_oracle", rank=P.SCALED_RANK_SHARE), "shadowkv_oracle_scaled"),
    (lambda: P.variant("yakv", offload=False, key_group=64), "yakv_key_group=64_on-device"),
])
def test_derived_names(build, name):
    assert build().name == name


def test_variant_name_lists_every_changed_field():
    base = resolve("shadowkv")
    cfg = base.replace(rank=-1, chunk_size=4, local_budget=16, outlier_chunks=2, scoring="mean_dot", selection="oracle",
                       sparse_budget=64)
    assert P.variant_name(base, cfg) == "shadowkv_fullkeys_c4_w16_o2_meandot_oracle@64t"
    assert P.variant_name("shadowkv", base) == "shadowkv"  # nothing changed


def test_workbook_methods_scale_the_rank():
    from shadowkv_lab.testing import tiny_model
    from shadowkv_lab.workbook import methods, shadowkv_methods

    model, _ = tiny_model("qwen2")
    cfgs = methods(model, ["shadowkv", "yakv", resolve("full")])
    assert [c.name for c in cfgs] == ["shadowkv_scaled", "yakv", "full"]
    ranked = shadowkv_methods(model, rank=20, sparse_budget=0.05)
    assert ranked["shadowkv"].name == "shadowkv_r20@0.05" and ranked["shadowkv_oracle"].name == "shadowkv_oracle_r20@0.05"
    assert shadowkv_methods(model)["shadowkv_oracle"].name == "shadowkv_oracle_scaled"


def test_one_tiny_loader():
    from shadowkv_lab import models, runner_cli, testing

    assert runner_cli.TINY_PREFIX is testing.TINY_PREFIX
    with pytest.raises(ValueError, match="unknown tiny model 'tiny-gpt2'; allowed: tiny-llama"):
        models.load_model("tiny-gpt2")
    model, tok = models.load_model("tiny-llama", dtype="bf16")
    assert model.config.model_type == "llama" and next(model.parameters()).dtype == torch.bfloat16


def test_centred_key_compression_is_the_format_with_the_key_offset_removed():
    plain, centred = P.key_compression("higgs4"), P.key_compression("higgs4_centred")
    assert centred.key_offset == P.KEY_OFFSET and plain.key_offset == "none"
    assert centred.replace(key_offset="none", name=plain.name, description=plain.description) == plain
    for bad in ("exact_centred", "higgs3", "higgs4_centered"):
        with pytest.raises(ValueError, match=rf"key compression '{bad}' unknown; allowed .*higgs4_centred"):
            P.key_compression(bad)

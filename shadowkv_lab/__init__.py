"""shadowkv-lab: what KV-cache offloading (ShadowKV, YAKV) costs in accuracy, memory and speed.

Reproduction workbook for "KV Cache Offloading for Context-Intensive Tasks" (arXiv 2604.08426).

The names below are imported on first use, so importing one submodule (e.g. shadowkv_lab.kernels.scoring) pulls in
only what that submodule needs: the kernels never load the cache, and the runner's pandas/pyarrow load only with it.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "OffloadConfig": "cache.config",
    "PRESETS": "cache.presets", "get_preset": "cache.presets", "resolve": "cache.presets",
    "load_model": "models", "load_tokenizer": "models", "prepare_model": "models",
    "GenerationResult": "generation", "build_cache": "generation", "decode": "generation",
    "encode_prompt": "generation", "generate": "generation", "prefill": "generation",
    "run": "runner",
}


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = ["OffloadConfig", "PRESETS", "get_preset", "resolve", "load_model", "load_tokenizer", "prepare_model", "generate", "run", "__version__"]

"""shadowkv-lab: what KV-cache offloading (ShadowKV, YAKV) costs in accuracy, memory and speed.

Reproduction workbook for "KV Cache Offloading for Context-Intensive Tasks" (arXiv 2604.08426).
"""

__version__ = "0.1.0"

from .cache.config import OffloadConfig  # noqa: E402
from .cache.presets import PRESETS, get_preset, resolve  # noqa: E402
from .models import load_model, load_tokenizer, prepare_model  # noqa: E402


from .generation import GenerationResult, build_cache, decode, encode_prompt, generate, prefill  # noqa: E402


def __getattr__(name):
    if name == "run":  # the runner pulls in pandas/pyarrow: import on first use
        from .runner import run

        return run
    raise AttributeError(name)


__all__ = ["OffloadConfig", "PRESETS", "get_preset", "resolve", "load_model", "load_tokenizer", "prepare_model", "generate", "run", "__version__"]

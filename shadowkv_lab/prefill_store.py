"""A folder of exact prefills, so that separate processes (the workbook's notebooks) prefill each prompt once.

A prefill is deterministic: the same weights, prompt tokens, code, libraries, device and thread count give
bit-identical keys, values and first logits. An entry's name is a digest of all of these, so a stored prefill is
only ever reused where recomputing it would give the same bits (tests/test_prefill_store.py checks this), and a change
of any of them (an edited module, another torch) misses and prefills again.

Worth it where prefill is slow and the prompt small: the quick profile on a CPU, where notebooks 01 to 07 prefill
the same prompts (about 20 s each on 2 cores, about 40 MB stored each). On a GPU a 16k prefill of the 1.5B takes a
fraction of a second and its state is 700 MB: recomputing is faster than reading it back, so leave the store off.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

import torch

from .cache.sequence import PrefillState

ENV = "SHADOWKV_LAB_PREFILLS"
_FIELDS = ("input_ids", "k_pre", "k_post", "v", "first_logits", "prefill_s")


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 of the package's Python sources: any edit to the package starts a fresh set of entries."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def model_digest(model) -> str:
    """sha256 of the model's config, parameters and buffers (names, dtypes, shapes, bytes); computed once per model
    object (1.0 s for the 0.5B on 2 cores) and kept on it: a model whose weights are then changed in place keeps
    the old digest until model.__dict__["_skv_digest"] is dropped."""
    got = model.__dict__.get("_skv_digest")
    if got is not None:
        return got
    h = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True, default=str).encode())
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        t = t.detach().contiguous().cpu()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())  # the tensor's own bytes, not a copy
    model.__dict__["_skv_digest"] = h.hexdigest()
    return model.__dict__["_skv_digest"]


def entry_key(model, input_ids: torch.Tensor) -> str:
    """The digest naming one prompt's prefill under this model, code, library versions, device and threads."""
    import transformers

    p = next(model.parameters())
    ids = input_ids.reshape(-1).long().cpu().contiguous()
    parts = [model_digest(model), code_digest(), torch.__version__, transformers.__version__, str(p.device), str(p.dtype),
             str(torch.get_num_threads()), torch.backends.cpu.get_cpu_capability(),
             hashlib.sha256(ids.numpy().tobytes()).hexdigest()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class PrefillStore:
    """Exact prefills saved under `root`, one file per (model, prompt, code, environment) digest (entry_key)."""

    def __init__(self, root):
        if root is None or str(root) == "":
            raise ValueError("PrefillStore needs a folder, got an empty path")
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise NotADirectoryError(f"prefill store {self.root} exists and is not a folder")

    @classmethod
    def from_env(cls) -> PrefillStore | None:
        """The store in $SHADOWKV_LAB_PREFILLS, or None when it is unset or empty."""
        root = os.environ.get(ENV, "")
        return cls(root) if root else None

    def path(self, model, input_ids) -> Path:
        return self.root / f"{entry_key(model, input_ids)}.pt"

    def get(self, model, input_ids: torch.Tensor) -> PrefillState | None:
        """The stored prefill of this prompt under this model (tensors on the model's device), or None."""
        f = self.path(model, input_ids)
        if not f.exists():
            return None
        try:
            d = torch.load(f, map_location=next(model.parameters()).device, weights_only=True)
            state = PrefillState(**{k: d[k] for k in _FIELDS})
            state.input_ids = state.input_ids.cpu()
        except Exception as e:  # a file the atomic write cannot have left: say which one, never guess
            raise RuntimeError(f"prefill store entry {f} cannot be read ({type(e).__name__}: {e}); delete it to "
                               "prefill again") from e
        if not torch.equal(state.input_ids.cpu(), input_ids.reshape(-1).long().cpu()):
            raise RuntimeError(f"prefill store entry {f} holds another prompt (a digest collision or a copied file)")
        return state

    def put(self, model, state: PrefillState) -> Path:
        """Save `state` atomically (a temporary file, then a rename: a killed run leaves no partial entry)."""
        self.root.mkdir(parents=True, exist_ok=True)
        f = self.path(model, state.input_ids)
        tmp = f.with_suffix(f".tmp{os.getpid()}")
        torch.save({k: getattr(state, k) for k in _FIELDS}, tmp)
        os.replace(tmp, f)
        return f

"""Small helpers the notebooks share, so that a notebook cell is one call (no algorithm lives in a notebook).

    model, tok = workbook.load("qwen2.5-coder-0.5b")     # or "tiny-qwen2" (random tiny model for smoke tests)
    df = workbook.run(model, tok, ["text2json"], methods, results_dir, model_name=..., n=2, tokens=2048)
    workbook.show(plots.accuracy_by_task(df), "01_accuracy", figures_dir)

Why a wrapper around shadowkv_lab.run: the results store is shared by every notebook and keyed by config hash,
so the same configuration may already be stored under another notebook's name (e.g. `lm_bf16_c1` and `chunk1`
are one config). `run` renames the returned rows to the names *this* notebook asked for.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pandas as pd

from .cache.config import OffloadConfig
from .cache.presets import SCALED_RANK_SHARE, matched_rank, variant, with_budget
from .cache.presets import resolve as resolve_method  # workbook.resolve resolves paths
from .prefill_store import PrefillStore


# notebook_grid runs a notebook's cells as a script up to its grid: "dry" plans it (no weights loaded), "run" runs it;
# either way wb.run then stops the notebook (GridStop) before its figures. "stored" (run_all.sh --stored-only) runs
# the whole notebook but no cell: wb.run returns stored rows or raises runner.MissingCells naming what is missing.
GRID_ENV = "SHADOWKV_LAB_GRID"
GRID_MODES = ("dry", "run", "stored")


class GridStop(Exception):
    """Raised by run() under notebook_grid, carrying its result."""

    def __init__(self, result):
        super().__init__("grid done")
        self.result = result


def _grid_mode() -> str | None:
    mode = os.environ.get(GRID_ENV) or None
    if mode not in (None, *GRID_MODES):
        raise ValueError(f"{GRID_ENV}={mode!r}: allowed {', '.join(GRID_MODES)} (or unset)")
    return mode


def load(model: str, device: str | None = None, dtype=None):
    """(model, tokenizer) by shadowkv_lab.load_model: offline names, hub ids, local folders, and 'tiny-<arch>'
    (tiny-qwen2, tiny-llama, ...), a random tiny model built in code for smoke tests."""
    from .models import load_model

    if _grid_mode() == "dry":  # the plan needs the tokenizer and the model's shape, not its weights
        from .models import load_meta_model

        return load_meta_model(model)

    t0 = time.perf_counter()
    m, tok = load_model(model, device=device, dtype=dtype)
    dev = next(m.parameters()).device
    print(f"loaded {model} on {dev} ({next(m.parameters()).dtype}) in {time.perf_counter() - t0:.1f}s; "
          f"{kv_shape(m)[0]} KV heads x head_dim {kv_shape(m)[1]}, {m.config.num_hidden_layers} layers")
    return m, tok


def kv_shape(model) -> tuple[int, int]:
    """(KV heads, head dim) of a loaded model."""
    cfg = model.config
    heads = cfg.num_attention_heads
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return int(getattr(cfg, "num_key_value_heads", None) or heads), int(hd)


def project_root(start=None) -> Path:
    """The checkout holding pyproject.toml above `start` (default: the working directory), else the working
    directory: notebooks opened from notebooks/ and papermill runs from the root then share one results store."""
    here = Path(start or os.getcwd()).resolve()
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file() and (d / "shadowkv_lab").is_dir():
            return d
    return here


def resolve(path) -> Path:
    """A relative path is relative to the project root (not to wherever the notebook runs)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else project_root() / p


def dirs(*paths) -> list[Path]:
    """Resolve (see `resolve`), create and return the given folders (results, figures, ...)."""
    out = [resolve(p) for p in paths]
    for p in out:
        p.mkdir(parents=True, exist_ok=True)
    return out


# ------------------------------------------------------------------------------------------ methods
def shadowkv_rank(model, rank: int | None = None) -> int:
    """ShadowKV's SVD rank for this model: `rank` if given, else the rank with the same share of H*d as the
    paper's 160 of Llama-3-8B's 1024 (docs/algorithms.md, "Prefill" step 1: 160 is full rank for a model with H*d <= 160)."""
    return int(rank) if rank else matched_rank(*kv_shape(model))


def shadowkv_methods(model=None, rank: int | None = None, sparse_budget=None) -> dict[str, OffloadConfig]:
    """The 2x2 attribution grid plus full attention.

    Keys are roles ('full', 'shadowkv', 'shadowkv_fullkeys', 'shadowkv_oracle', 'oracle'). rank=None: ShadowKV's
    rank scaled to the model as a share of H*d (the `shadowkv_scaled` preset; the same config, hence the same store
    cells, for every model); an int: that rank, named 'shadowkv_r<rank>' unless it is the preset's 160.
    """
    out = {}
    for role in ("full", "shadowkv", "shadowkv_fullkeys", "shadowkv_oracle", "oracle"):
        c = resolve_method(role)
        if role in ("shadowkv", "shadowkv_oracle"):
            if rank is None:
                c = resolve_method("shadowkv_scaled") if role == "shadowkv" else variant(
                    c, rank=SCALED_RANK_SHARE, description="ShadowKV keys at the scaled rank, oracle token selection")
            elif int(rank) != c.rank:
                c = variant(c, rank=int(rank), description=f"{c.description} (rank {int(rank)})")
        if sparse_budget is not None and c.kind != "full":
            c = with_budget(c, sparse_budget)
        out[role] = c
    return out


def methods(model, names, rank: int | None = None) -> list[OffloadConfig]:
    """Preset names / configs -> configs (cache.presets.resolve), with 'shadowkv' and 'shadowkv_oracle' at the
    model-scaled rank (shadowkv_methods)."""
    scaled = shadowkv_methods(model, rank)
    return [scaled[n] if isinstance(n, str) and n in scaled else resolve_method(n) for n in names]


def attribution_cells(methods: dict[str, OffloadConfig]) -> dict[str, str]:
    """analysis.factorial_attribution's `cells` argument for shadowkv_methods(...)."""
    return {"full": methods["full"].name, "lowrank_landmark": methods["shadowkv"].name, "exact_landmark": methods["shadowkv_fullkeys"].name,
            "lowrank_oracle": methods["shadowkv_oracle"].name, "exact_oracle": methods["oracle"].name}


def as_configs(methods) -> list[OffloadConfig]:
    """Preset names / configs -> configs (cache.presets.resolve; dict values accepted)."""
    if isinstance(methods, dict):
        methods = list(methods.values())
    return [resolve_method(m) for m in methods]


# ------------------------------------------------------------------------------------------- tasks
def load_task_samples(task_name: str, tokenizer, *, n: int, tokens: int, seed: int = 0, **kw):
    """(Task, samples) for shadowkv_lab.run. Extra generator knobs (e.g. n_gold for Text2JSON) are folded into
    the sample ids, so a store never mixes samples generated with different knobs under one id."""
    import hashlib
    import json

    from .tasks import get_task

    task = get_task(task_name)
    samples = _cached_samples(task, tokenizer, n=n, tokens=tokens, seed=seed, **kw)
    if kw:
        tag = "-".join(f"{k}{v}" for k, v in sorted(kw.items()))
        if len(tag) > 32 or not tag.replace("_", "").replace(".", "").replace("-", "").isalnum():
            tag = "kw" + hashlib.sha1(json.dumps(kw, sort_keys=True).encode()).hexdigest()[:8]
        samples = [dataclasses.replace(s, id=f"{s.id}-{tag}") for s in samples]
    return task, samples


SAMPLES_ENV = "SHADOWKV_LAB_SAMPLES"  # folder of generated samples; default outputs/samples under the project root


def _cached_samples(task, tokenizer, **kw):
    """task.load(None, ...) of a generated task, kept on disk: every notebook of a profile asks for the same samples,
    and a 16k-token Text2JSON set takes a while to generate. Keyed by task, arguments and the tokenizer's behaviour
    (vocabulary size and a probe encoding), so a cache never serves samples measured with another tokenizer."""
    import hashlib
    import json
    import pickle

    probe = tokenizer("shadowkv-lab sample cache probe 0123", add_special_tokens=False)["input_ids"] if tokenizer else None
    key = json.dumps([task.name, {k: kw[k] for k in sorted(kw)}, len(tokenizer) if tokenizer else None, probe],
                     sort_keys=True, default=str)
    folder = Path(os.environ.get(SAMPLES_ENV) or project_root() / "outputs" / "samples")
    path = folder / f"{task.name}-{hashlib.sha1(key.encode()).hexdigest()[:16]}.pkl"
    if path.is_file():
        with open(path, "rb") as f:
            stored_key, samples = pickle.load(f)
        if stored_key == key:
            return samples
    samples = task.load(None, tokenizer=tokenizer, **kw)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        pickle.dump((key, samples), f)
    os.replace(tmp, path)
    return samples


def samples_for(tasks, tokenizer, *, n: int, tokens: int, seed: int = 0, task_kw: dict | None = None,
                data_dir=None) -> list:
    """[(Task, samples)] for several task names; task_kw maps a task name to its generator knobs.

    data_dir: a folder of the study's data files (shadowkv_lab.study, docs/reproduction.md). Each task's first n
    samples at this prompt length are read from its file instead of generated, so the cells are those of the
    reproduction's store; seed and task_kw then do not apply (the files were written with their own)."""
    if data_dir is None:
        task_kw = task_kw or {}
        return [load_task_samples(t, tokenizer, n=n, tokens=tokens, seed=seed, **task_kw.get(t, {})) for t in tasks]
    from .runner import resolve_tasks
    from .study import data_file

    out = []
    for name in tasks:
        path = data_file(data_dir, name, tokens)
        ((task, samples),) = resolve_tasks([name], n=n, data=str(path), tokenizer=tokenizer)
        if len(samples) < n:
            raise ValueError(f"{path} holds {len(samples)} {name} samples, fewer than n={n}")
        out.append((task, samples))
    return out


def gold_and_prompts(task_samples) -> tuple[dict, dict]:
    """sample_id -> gold and sample_id -> prompt over (Task, samples) pairs (for analysis.text2json_field_errors)."""
    gold, prompts = {}, {}
    for _, samples in task_samples:
        for s in samples:
            gold[str(s.id)] = s.gold
            prompts[str(s.id)] = s.prompt
    return gold, prompts


# --------------------------------------------------------------------------------------------- run
def refill_from_env() -> bool:
    """SHADOWKV_LAB_REFILL: 1 (the default) or 0, whether the notebooks' grids refill their waves (runner.run)."""
    refill = os.environ.get("SHADOWKV_LAB_REFILL", "1")
    if refill not in ("0", "1"):
        raise ValueError(f"SHADOWKV_LAB_REFILL={refill!r}: allowed 0, 1")
    return refill == "1"


def run(model, tokenizer, tasks, methods, results_dir, *, model_name: str, n: int, tokens: int, seed: int = 0,
        max_new_tokens: int | None = None, record: bool = False, batch_size: int | None = None, **kw) -> pd.DataFrame:
    """shadowkv_lab.run over the shared results store, rows renamed to this call's method names.

    tasks: names, Task objects or (Task, samples) pairs. batch_size: (sample, method) rows decoded together
    (default 16, SHADOWKV_LAB_BATCH overrides): a wave lasts as long as its longest answer, so few big waves
    beat many small ones, but by default queued rows take finished rows' places (runner.run refill; the tokens are
    the same; SHADOWKV_LAB_REFILL=0 turns it off). SHADOWKV_LAB_PREFILLS=DIR shares exact prefills between notebooks
    (prefill_store; run_all.sh sets it for the CPU's quick profile).
    """
    from .runner import run as _run

    cfgs = as_configs(methods)
    if batch_size is None:
        batch_size = int(os.environ.get("SHADOWKV_LAB_BATCH", 0)) or 16
    kw.setdefault("refill", refill_from_env())
    kw.setdefault("prefills", PrefillStore.from_env())
    mode = _grid_mode()
    t0 = time.perf_counter()
    df = _run(model, tokenizer, tasks, cfgs, str(results_dir), model_name=model_name, n=n, tokens=tokens, seed=seed,
              max_new_tokens=max_new_tokens, record=record, batch_size=batch_size, dry_run=mode == "dry",
              stored_only=mode == "stored", **kw)
    if mode == "dry":
        raise GridStop(df)
    print(f"[workbook.run] {len(df)} rows ({len(cfgs)} methods) in {time.perf_counter() - t0:.1f}s")
    if mode == "run":
        raise GridStop(rename(df, cfgs))
    return rename(df, cfgs)


def rename(df: pd.DataFrame, configs) -> pd.DataFrame:
    """Method names from this notebook's configs, matched by config_hash (the store's identity of a method)."""
    names = {c.config_hash(): c.name for c in as_configs(configs)}
    if len(df) == 0 or "config_hash" not in df:
        return df
    df = df.copy()
    df["method"] = df["config_hash"].map(names).fillna(df["method"])
    return df


def records(results_dir, df: pd.DataFrame) -> pd.DataFrame:
    """Attention records of exactly the rows in df (same model, task, sample, config), with df's method names."""
    from .results import load_records

    r = load_records(results_dir)
    if len(r) == 0 or len(df) == 0:
        return r
    key = ["model", "task", "sample_id", "config_hash"]
    cells = df[key + ["method"]].drop_duplicates(key)
    return r.drop(columns=["method"]).merge(cells, on=key, how="inner")


def report(df: pd.DataFrame) -> pd.DataFrame:
    """Print what could bias the numbers: generations cut by max_new_tokens and cells that fell back to exact
    attention (prompt too short for the method). Returns those rows."""
    cut = df["finish_reason"].eq("length") if "finish_reason" in df else pd.Series(False, index=df.index)
    fb = df["fallback"].fillna("").ne("") if "fallback" in df else pd.Series(False, index=df.index)
    print(f"{len(df)} rows: {int(cut.sum())} hit max_new_tokens (answer cut: its score is a lower bound), "
          f"{int(fb.sum())} fell back to exact attention")
    if fb.any():
        print(df.loc[fb, ["task", "sample_id", "method", "fallback"]].drop_duplicates("method").to_string(index=False))
    return df[cut | fb]


# ---------------------------------------------------------------------------------------- display
def show(fig, name: str, figures_dir="figures", stamp=None):
    """Save a figure as PDF + PNG under figures_dir (stamped when given a plots.Stamp) and display it inline (when
    in a notebook); plots.FigureSaver does the same with one stamp for a whole notebook."""
    from .plots.style import show as _show

    return _show(fig, name, figures_dir, stamp)


def md(text: str) -> None:
    """Markdown output from a code cell; printed as text where IPython is not installed (a notebook run as a script
    by notebook_grid on a bare GPU host)."""
    try:
        from IPython.display import Markdown, display
    except ImportError:
        print(text)
        return
    display(Markdown(text))


# ------------------------------------------------------------------------------------------ demo data
def demo_results(n: int = 4, seed: int = 0, model: str = "demo-model") -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows, records): a small synthetic results table and attention records in the runner's schema
    (results.make_row), with plausible effects (ShadowKV loses on context-intensive tasks, YAKV does not). For tests
    and for trying the figures without a model; never mix it with real results.
    """
    import numpy as np

    from .cache.memory import format_bits
    from .cache.presets import SHADOWKV_BUDGET, chunk_size_ablation, key_compression, landmark_precision
    from .results import make_row

    rng = np.random.default_rng(seed)
    H, d, layers, L = 2, 64, 4, 2048

    cfgs = [resolve_method(m) for m in ("full", "shadowkv", "shadowkv_fullkeys", "shadowkv_oracle", "oracle", "yakv", "yakv_residual")]
    cfgs += [landmark_precision(p) for p in ("bf16", "fp8", "higgs4", "higgs2", "higgs1", "residual")]
    cfgs += [chunk_size_ablation(c) for c in (2, 4, 8, 16)]
    cfgs += [key_compression(r) for r in (10, 40)] + [key_compression("higgs4")]
    cfgs += [with_budget(resolve_method("shadowkv"), SHADOWKV_BUDGET * 10), with_budget(resolve_method("yakv"), 0.0625)]
    loss = {"shadowkv": 30, "shadowkv_fullkeys": 18, "shadowkv_oracle": 14, "oracle": 4, "yakv": 3, "yakv_residual": 4}
    rows, recs = [], []
    for task in ("text2json", "multineedle", "ruler_niah_single"):
        easy = task.startswith("ruler")
        for i in range(n):
            base = float(np.clip(rng.normal(95 if easy else 70, 8), 0, 100))
            for c in cfgs:
                b = format_bits(c, H, d, 16)
                if c.kind == "full":
                    drop = 0.0
                elif c.name in loss:
                    drop = loss[c.name]
                else:
                    lb = b["landmark_bits"]
                    drop = 2 + 3 * (c.chunk_size - 1) + (20 if lb < 2 else 0) + (25 if 0 < c.rank < 64 else 0) + 5 * rng.random()
                drop = drop * (0.15 if easy else 1.0) * (0.5 if "@" in c.name else 1.0)
                sc = float(np.clip(base - drop + rng.normal(0, 3), 0, 100))
                lm = 0.0 if c.kind == "full" else b["landmark_bits"] * H * d / 8 / c.chunk_size
                dev = 2 * H * d * 2 if c.kind == "full" else lm + (c.rank * 2 if c.rank > 0 else 0) + 40
                off = 0.0 if c.kind == "full" else H * d * (b["value_bits"] + (b["key_bits"] if c.rank < 0 else 0)) / 8
                cats = {"prompt_kv": dev} if c.kind == "full" else {"landmarks": lm, "lowrank_U": c.rank * 2.0 if c.rank > 0 else 0.0,
                                                                      "local": 40.0}
                metrics = {"score": sc}
                if task == "multineedle":
                    metrics.update({f"depth_{k}": float(100.0 * (rng.random() < sc / 100)) for k in range(0, 101, 10)})
                memory = {"device_bytes": dev * L * layers, "offloaded_bytes": off * L * layers,
                          "device_bytes_per_token_layer": dev, "offloaded_bytes_per_token_layer": off,
                          **{f"device:{k}": v * L * layers for k, v in cats.items()}, "device:generated": 1000.0,
                          **({} if c.kind == "full" else {"offloaded:values": H * d * b["value_bits"] / 8 * L * layers,
                                                          "offloaded:keys": (off - H * d * b["value_bits"] / 8) * L * layers})}
                finish = "stop" if rng.random() > 0.1 else "length"
                decode_s = 99 / (5.0 + rng.random())  # 100 new tokens at 5-6 tokens/s
                row = make_row(model=model, task=task, sample_id=f"{task}-{i}", config=c, primary_metric="score", metrics=metrics,
                               prediction="[]", prompt_tokens=L, new_tokens=100, finish_reason=finish, n_kv_heads=H, head_dim=d,
                               dtype_bits=16, memory=memory, prefill_s=4.0, decode_s=decode_s)
                rows.append(row)
                if c.kind == "full" or task != "text2json" or i > 1:
                    continue
                q = 1 - drop / 100
                for step in range(6):
                    for layer in range(layers):
                        for h in range(H):
                            recs.append({"model": model, "task": task, "sample_id": row["sample_id"], "method": c.name,
                                         "config_hash": row["config_hash"], "row": 0, "step": step, "layer": layer, "head": h,
                                         "budget": c.budget_tokens(L), "recall": float(np.clip(q - 0.05 * rng.random(), 0, 1)),
                                         "mass": float(np.clip(q + 0.1 * rng.random(), 0, 1)), "err_selection": float(0.3 * (1 - q) * rng.random()),
                                         "err_approx": float(0.1 * (c.rank > 0) * rng.random()), "mean_selected_position": float(rng.random())})
    return pd.DataFrame(rows), pd.DataFrame(recs)

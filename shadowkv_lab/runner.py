"""Experiment runner: model x tasks x samples x methods -> one tidy row per cell in a results store.

    df = run(model, tok, ["text2json"], ["full", "shadowkv", "yakv"], "results/qwen05", model_name="qwen2.5-coder-0.5b",
             n=16, tokens=16384)

Why it is shaped this way:
- One prefill per sample. Every method starts from the same exact prefill (docs/algorithms.md), so the runner prefills a
  sample once, builds each pending method's cache from that PrefillState and decodes all of them in one batched
  `decode` call. Rows of a wave are (sample, method) pairs, several samples per wave when batch_size allows; the
  tokens are identical to running `generate` per method (greedy, each row its own cache).
- Loss-free resume. The rows a decode call finishes become one atomic shard (results.py) as soon as it returns; a
  rerun skips every (model, task, sample_id, config_hash) already stored. A killed run loses at most the rows in
  flight: a decode call also returns every WRITE_EVERY_S seconds once a row has finished, so the finished rows of a
  long wave are stored before a time limit (a GPU call's, say) cuts it.
- Replayed and eager rows apart. A stacked step is replayed from a CUDA graph only when every row can be (a
  recorded row, or a format without a Triton path, cannot), so each wave decodes those two classes in separate calls.
- Refill (the default; refill=False turns it off). Without it a wave decodes until its last row stops, so one row
  that loops to its cap keeps the step running for a few live rows. With refill a call returns once half of its
  rows have finished, and queued rows join the unfinished ones in the next call (generation.decode resumes a row
  from its tokens so far). The nine-method Text2JSON grid at 16k decoded 1.8x faster with it on an H100.
- Scale-out by sample. Under torchrun each rank takes every WORLD_SIZE-th (task, sample) of the full grid (a fixed
  assignment, independent of what is already done, so ranks never disagree), keeps all methods of its samples
  (prefill sharing survives), writes its own shards; torch.distributed is used only for the final barrier.
"""

from __future__ import annotations

import collections
import os
import sys
import time
import warnings
from dataclasses import dataclass, field

import torch

from .cache.batched import replayable
from .cache.config import OffloadConfig
from .cache.presets import resolve
from .generation import build_cache, decode, encode_prompt, prefill, stop_token_ids
from .prefill_store import PrefillStore
from .provenance import provenance
from .results import RECORDS, ResultsWriter, done_keys, load, make_row


# ---------------------------------------------------------------------------------------------- inputs
def resolve_methods(methods) -> list[OffloadConfig]:
    """Preset names or OffloadConfigs -> configs (cache.presets.resolve); duplicate cells dropped."""
    if isinstance(methods, (str, OffloadConfig)):
        methods = [methods]
    out, seen = [], {}
    for m in map(resolve, methods):
        h = m.config_hash()
        if h in seen:  # same hash = same cell in the store: running it twice would duplicate rows
            warnings.warn(f"method {m.name!r} has the same config as {seen[h]!r} (hash {h}); running it once")
            continue
        seen[h] = m.name
        out.append(m)
    if not out:
        raise ValueError("no methods given")
    return out


def _get_task(name: str):
    from .tasks import get_task  # the tasks package is only needed when tasks are given by name

    return get_task(name)


def resolve_tasks(tasks, *, n=None, tokens=None, seed=0, data=None, tokenizer=None) -> list[tuple[object, list]]:
    """tasks: a name, a Task, or a list of names / Tasks / (name or Task, samples) pairs -> [(Task, samples)].

    Named tasks are loaded with Task.load(path, n=, tokens=, seed=, tokenizer=); `data` is one path used for every
    task or a {task name: path} dict (None: the task's offline generator)."""
    if isinstance(tasks, str) or hasattr(tasks, "score") or (isinstance(tasks, tuple) and len(tasks) == 2 and isinstance(tasks[1], list)):
        tasks = [tasks]  # one task, or one (task, samples) pair
    out = []
    for t in tasks:
        samples = None
        if isinstance(t, tuple):
            t, samples = t
        task = _get_task(t) if isinstance(t, str) else t
        if samples is None:
            path = data.get(task.name) if isinstance(data, dict) else data
            samples = task.load(path, n=n, tokens=tokens, seed=seed, tokenizer=tokenizer)
        ids = [str(s.id) for s in samples]
        if len(set(ids)) != len(ids):
            raise ValueError(f"task {task.name!r} has duplicate sample ids: a results cell would be ambiguous")
        out.append((task, list(samples)))
    return out


def dist_env() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from the torchrun environment; (0, 1, 0) when not under torchrun."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


# ---------------------------------------------------------------------------------------------- row columns
def _score(task, prediction: str, gold) -> dict[str, float]:
    """Task.score never raises by contract; if one does anyway, the cell scores 0 (warned) instead of killing a run."""
    try:
        metrics = dict(task.score(prediction, gold))
    except Exception as e:  # noqa: BLE001
        warnings.warn(f"{task.name}.score raised {type(e).__name__}: {e}; scoring the sample 0")
        return {task.primary_metric: 0.0}
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


# ---------------------------------------------------------------------------------------------- plan
@dataclass
class _Item:
    """One (task, sample) of this process with the methods still to run on it."""

    task: object
    sample: object
    cap: int  # max new tokens
    pending: list[OffloadConfig]
    done: int = 0  # methods already in the store
    _state: object = field(default=None, repr=False)  # PrefillState while some of its rows are not built yet
    _n_prompt: int | None = field(default=None, repr=False)

    def prompt_tokens(self, tokenizer) -> int:
        """The prompt's length in tokens, encoded once per item (context check, dry run and wave sizing share it)."""
        if self._n_prompt is None:
            self._n_prompt = len(encode_prompt(tokenizer, self.sample.prompt))
        return self._n_prompt


def _needs_records(cfg: OffloadConfig, record: bool) -> bool:
    """Whether a cell of `cfg` stores attention records when run with `record` (full attention has none)."""
    return record and cfg.kind != "full"


def _done_cells(out, cfgs, record: bool) -> dict[str, set]:
    """config_hash -> the stored (model, task, sample_id, config_hash) cells that satisfy this run: a recorded row
    serves every request, a row without records only requests that record nothing."""
    done, done_rec = done_keys(out), (done_keys(out, recorded=True) if record else set())
    return {c.config_hash(): done_rec if _needs_records(c, record) else done for c in cfgs}


def _plan(task_samples, cfgs, done: dict[str, set], model_name: str, max_new_tokens, rank: int, world: int) -> list[_Item]:
    items, i = [], 0
    for task, samples in task_samples:
        for s in samples:
            mine = i % world == rank  # fixed round-robin over the full grid: ranks never depend on the store's state
            i += 1
            if not mine:
                continue
            pending = [c for c in cfgs if (model_name, task.name, str(s.id), c.config_hash()) not in done[c.config_hash()]]
            cap = int(max_new_tokens) if max_new_tokens is not None else int(task.max_new_tokens_for(s))
            items.append(_Item(task, s, cap, pending, done=len(cfgs) - len(pending)))
    return items


_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RATES = os.path.join(_ROOT, "benchmarks", "results", "runner_h100.json")  # the grid with values on the device
RATES_OFFLOADED = os.path.join(_ROOT, "benchmarks", "results", "runner_h100_offloaded.json")  # values in host memory
RATES_REFILL = os.path.join(_ROOT, "benchmarks", "results", "runner_h100_refill.json")  # on the device, with refill
ANSWERS = os.path.join(_ROOT, "results", "reproduction", "cells.parquet")  # the reproduction's rows: answer lengths


def rates_for(on_device: bool, refill: bool = False) -> str:
    """The committed runner benchmark measured with the run's placement of values (and, on the device, with refill
    when the run refills: queued rows taking finished rows' places nearly doubled the measured rate); the on-device
    one when no offloaded grid has been measured (the estimate then says it is a lower bound)."""
    if on_device and refill and os.path.exists(RATES_REFILL):
        return RATES_REFILL
    return RATES if on_device or not os.path.exists(RATES_OFFLOADED) else RATES_OFFLOADED


def measured_answer_tokens(path: str = ANSWERS) -> dict[str, float]:
    """Mean generated tokens per task (its name without a length suffix) over the rows of a committed results export
    (default: the reproduction's, the 1.5B at 16k): what a row of that task costs on average, against its cap. {}
    when the file is absent."""
    import pandas as pd

    if not os.path.exists(path):
        return {}
    d = pd.read_parquet(path, columns=["task", "new_tokens"])
    return d.assign(task=d["task"].str.split("@").str[0]).groupby("task")["new_tokens"].mean().to_dict()


def _share_rate(d) -> float:
    """Decode tokens (the first comes from the prefill logits) over the rows' shares of their decode calls' time."""
    return float((d["new_tokens"] - 1).sum() / d["decode_share_s"].sum())


def _made_by(d) -> str:
    """The devices and commits that produced rows d, for a rate's source line."""
    commits = ", ".join(sorted(c[:7] for c in d["git_commit"].dropna().unique()))
    return f"{', '.join(sorted(d['device_name'].unique()))}, {commits}"


def measured_recorded_rate(path: str = ANSWERS) -> dict | None:
    """Aggregate decode tokens/s of recorded rows, from the recorded rows of a committed results export (default: the
    reproduction's). Rows that carry their share of the decode calls' time (decode_share_s) give it exactly: their
    decode tokens over their shares. Older rows are estimated per decode call (rows sharing a timestamp): its rows
    (batch_rows) over the time one step took (the longest row's decode_s over its new tokens); over several calls,
    sum(rows x steps) / sum(time). Recording runs every step eagerly and compares each row's selection with exact
    attention, many times slower than an unrecorded step, so the unrecorded rates would underestimate a recorded
    grid. {decode_tok_s, source}; None without recorded rows."""
    import pandas as pd

    if not os.path.exists(path):
        return None
    d = pd.read_parquet(path)
    d = d[d["recorded"].fillna(False).astype(bool) & (d["new_tokens"] > 0) & (d["decode_s"] > 0)]
    if d.empty:
        return None
    shared = d[d["decode_share_s"] > 0] if "decode_share_s" in d else d.iloc[:0]
    if len(shared):
        d, how = shared, "their shares of the decode calls' time"
        rate = _share_rate(d)
    else:
        calls = d.groupby("timestamp").agg(rows=("batch_rows", "max"), steps=("new_tokens", "max"), s=("decode_s", "max"))
        rate = float((calls["rows"] * calls["steps"]).sum() / calls["s"].sum())
        how = f"{len(calls)} decode calls"
    return {"decode_tok_s": rate, "source": f"{len(d)} recorded rows of {os.path.basename(path)} ({how}, {_made_by(d)})"}


GRID_RATE_MIN_ROWS = 64  # fewer rows are a spot check or the last wave's tail, not a grid's rate


def measured_grid_rate(path: str = ANSWERS, on_device: bool = False) -> dict | None:
    """Aggregate decode tokens/s of a committed results export's unrecorded rows with this placement of values (the
    configs' `offload`): their decode tokens over their shares of the decode calls' wall time (`decode_share_s`,
    results.make_row), so tails, re-stacks and graph captures count. {decode_tok_s, source}; None when fewer than
    GRID_RATE_MIN_ROWS such rows carry a share (rows written before the column existed carry none)."""
    import json

    import pandas as pd

    if not os.path.exists(path):
        return None
    d = pd.read_parquet(path)
    if "decode_share_s" not in d:
        return None
    d = d[~d["recorded"].fillna(False).astype(bool) & (d["decode_share_s"] > 0) & (d["new_tokens"] > 1)]
    d = d[[json.loads(c).get("offload", True) != on_device for c in d["config"]]]
    if len(d) < GRID_RATE_MIN_ROWS:
        return None
    where = "on the device" if on_device else "offloaded"
    return {"decode_tok_s": _share_rate(d),
            "source": f"{len(d)} rows of {os.path.basename(path)} with values {where} ({_made_by(d)})"}


def dry_run_rates(on_device: bool, refill: bool) -> dict:
    """The rates a dry run estimates a grid with (measured_rates' keys): prefill from the committed runner benchmark
    with this placement of values (rates_for); decode from the reproduction's own grids where enough of their rows
    with this placement carry their decode share (measured_grid_rate), else from that benchmark."""
    grid = measured_grid_rate(ANSWERS, on_device=on_device)
    rates = measured_rates(rates_for(on_device, refill))
    if grid is None:
        return rates
    return {**rates, "decode_tok_s": grid["decode_tok_s"], "on_device": on_device,
            "source": f"decode: {grid['source']}; prefill: {rates['source']}"}


def measured_rates(path: str = RATES) -> dict:
    """Prefill and aggregate decode tokens/s of a committed runner benchmark (benchmarks/bench_runner.py JSON), with
    what it measured: {prefill_tok_s, decode_tok_s, on_device (values kept on the device; None: not recorded), source}."""
    import json

    if not os.path.exists(path):
        raise FileNotFoundError(f"no measured rates at {path}: the GPU-time estimate needs a benchmarks/bench_runner.py JSON")
    with open(path) as f:
        d = json.load(f)
    r, a = d["runner"], d["args"]
    return {"prefill_tok_s": r["prefill_tokens"] / r["prefill_s"], "decode_tok_s": r["decode_tok_s"],
            "on_device": a.get("on_device"),
            "source": f"{os.path.basename(path)}: {d['provenance']['device_name']}, {a['model']}, {a['methods'].count(',') + 1} "
                      f"methods x {a['n']} samples at {int(d['prompt_tokens_mean'])} tokens, {r['cells']} cells in waves "
                      f"of at most {a['batch_size']} rows{', refilled' if a.get('refill') else ''}"}


def _print_gpu_time(plan, rates: dict, recorded: dict | None = None, on_device: bool | None = None) -> None:
    """Estimated GPU time per task and in total: prefill tokens at the measured prefill rate plus the rows' decode
    tokens at the measured aggregate decode rate (recorded rows at `recorded`'s, measured_recorded_rate), each row at
    its task's measured mean answer length (expected; the cap where none is measured) and at its cap (an upper
    bound: rows that stop early cost less). on_device: where this run keeps values; a grid offloaded where the
    measured one was not is said to decode slower than estimated."""
    rec = plan["recorded"].astype(bool)
    decode_rate = rec.map({True: (recorded or rates)["decode_tok_s"], False: rates["decode_tok_s"]})
    by = plan.assign(dc=plan["decode_tokens_max"] / decode_rate,
                     de=plan["decode_tokens_expected"] / decode_rate).groupby("task", sort=False)
    pf = by["prefill_tokens"].sum() / rates["prefill_tok_s"]
    dc, de = by["dc"].sum(), by["de"].sum()
    print(f"estimated GPU time from measured rates ({rates['source']}: prefill {rates['prefill_tok_s']:,.0f} tok/s, "
          f"decode {rates['decode_tok_s']:,.1f} tok/s aggregate), the same rates assumed for this model, prompt length "
          f"and wave size; expected: each row at its task's mean answer length in {os.path.relpath(ANSWERS, _ROOT)}; "
          f"at most: every row to its cap:")
    if on_device is not None and rates.get("on_device") is not None and bool(rates["on_device"]) != bool(on_device):
        where = ("offloads values to host memory, the measured grid kept them on the device: an offloaded grid decodes "
                 "slower, so read these times as a lower bound" if not on_device else "keeps values on the device, "
                 "the measured grid offloaded them: read these times as an upper bound")
        print(f"  this run {where} (docs/reproduction.md gives measured part times)")
    if rec.any():
        print(f"  recorded rows decode at {recorded['decode_tok_s']:,.1f} tok/s ({recorded['source']})" if recorded
              else "  recorded rows: no recorded rate measured, counted at the unrecorded rate (an underestimate)")
    for task in pf.index:
        print(f"  {task}: {(pf[task] + de[task]) / 60:,.1f} min expected, at most {(pf[task] + dc[task]) / 60:,.1f} "
              f"(prefill {pf[task] / 60:,.1f}, decode {de[task] / 60:,.1f} to {dc[task] / 60:,.1f})")
    print(f"  total: {(pf.sum() + de.sum()) / 60:,.1f} min expected, at most {(pf.sum() + dc.sum()) / 60:,.1f} min")


def _print_dry_run(items: list[_Item], cfgs, tokenizer, out, rates: dict | None = None, record: bool = False,
                   on_device: bool | None = None):
    """Print the grid per task and the estimated cost; return the plan, one row per sample (record: its cells are
    recorded ones, estimated at the recorded rate)."""
    import pandas as pd

    rows, answers = [], measured_answer_tokens()
    for it in items:
        L = it.prompt_tokens(tokenizer)
        answer = min(float(it.cap), answers.get(it.task.name, float(it.cap)))
        rows.append({"task": it.task.name, "sample_id": str(it.sample.id), "prompt_tokens": L, "done": it.done,
                     "to_run": len(it.pending), "prefill_tokens": L if it.pending else 0,
                     "decode_tokens_max": it.cap * len(it.pending), "decode_tokens_expected": answer * len(it.pending),
                     "cap": it.cap, "answer_tokens": answer, "pending": ",".join(c.config_hash() for c in it.pending),
                     "recorded": bool(record)})
    plan = pd.DataFrame(rows, columns=["task", "sample_id", "prompt_tokens", "done", "to_run", "prefill_tokens",
                                       "decode_tokens_max", "decode_tokens_expected", "cap", "answer_tokens", "pending",
                                       "recorded"])
    print(f"dry run: {out}\nmethods ({len(cfgs)}): {', '.join(c.name for c in cfgs)}")
    if len(plan):
        g = plan.groupby("task", sort=False).agg(
            samples=("sample_id", "size"), prompt_tokens_mean=("prompt_tokens", "mean"), cells_done=("done", "sum"),
            cells_to_run=("to_run", "sum"), prefills=("to_run", lambda x: int((x > 0).sum())),
            prefill_tokens=("prefill_tokens", "sum"), decode_tokens_max=("decode_tokens_max", "sum"))
        print(g.to_string())
    tot = plan[["done", "to_run", "prefill_tokens", "decode_tokens_max"]].sum()
    print(f"cells: {len(plan) * len(cfgs)} total, {int(tot['done'])} done, {int(tot['to_run'])} to run; estimated cost: "
          f"{int(tot['prefill_tokens']):,} prefill tokens ({int((plan.to_run > 0).sum())} prefills), "
          f"<= {int(tot['decode_tokens_max']):,} decode tokens")
    if len(plan) and rates is not None:
        _print_gpu_time(plan, rates, measured_recorded_rate() if record else None, on_device)
    return plan


# ---------------------------------------------------------------------------------------------- the model's context
OVER_CONTEXT = ("error", "skip")


class ContextLengthError(ValueError):
    """Prompts that, with their generation cap, do not fit the model's context window."""


def context_tokens(config) -> int | None:
    """The model's context window in tokens (config.max_position_embeddings; None when the config has none)."""
    v = getattr(config, "max_position_embeddings", None)
    return int(v) if isinstance(v, int) and v > 0 else None


def _fit_context(items: list[_Item], tokenizer, limit: int | None, policy: str, *, quiet: bool = False) -> list[_Item]:
    """The items whose prompt plus generation cap fits `limit` tokens. Past the context the model sees positions it
    was not trained on, so such a cell is never run: policy "error" raises ContextLengthError naming every such sample,
    "skip" drops them and prints them (they stay out of the store; a later run with a longer-context model runs them)."""
    if limit is None or not items:
        return items
    over = []
    for it in items:
        L = it.prompt_tokens(tokenizer)
        if L + it.cap > limit:
            over.append((it, L))
    if not over:
        return items
    listed = ", ".join(f"{it.task.name}/{it.sample.id} ({L:,} + {it.cap:,})" for it, L in over[:8])
    more = f" and {len(over) - 8} more" if len(over) > 8 else ""
    msg = (f"{len(over)} of {len(items)} samples need more than the model's context of {limit:,} tokens "
           f"(prompt + max new tokens): {listed}{more}")
    if policy == "error":
        raise ContextLengthError(f"{msg}; pass over_context='skip' (--over-context skip) to run the rest")
    if not quiet:
        print(f"skipped: {msg}", flush=True)
    dropped = {id(it) for it, _ in over}
    return [it for it in items if id(it) not in dropped]


# ---------------------------------------------------------------------------------------------- memory-aware waves
HEADROOM = 0.9  # share of the free memory a wave may fill: the rest absorbs the prefill's activations and fragmentation


class RowMemoryError(MemoryError):
    """A single row needs more memory than the device has free."""


def free_device_bytes(device: torch.device) -> int | None:
    """Bytes a new wave can allocate on `device`: on CUDA the driver's free memory plus what PyTorch's allocator holds
    but does not use; on CPU the available RAM (free_host_bytes). None: no limit known (another device type)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "cpu":
        return free_host_bytes()
    return None


def free_host_bytes() -> int | None:
    """Host RAM a new wave's offloaded stores can take: MemAvailable of /proc/meminfo (Linux), else psutil's
    available memory; None when neither can tell (no limit, said once)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        warnings.warn("free_host_bytes: neither /proc/meminfo nor psutil: waves are not sized by host memory",
                      RuntimeWarning, stacklevel=2)
        return None
    return int(psutil.virtual_memory().available)


HOST_COPIES = 2  # a row's offloaded stores, and the stacked copy its decode call makes of them (the row then holds views)


def _model_shape(model) -> dict:
    """n_layers, n_q_heads, n_kv_heads, head_dim, dtype_bytes and the prefill's transient bytes per prompt token."""
    cfg = model.config
    cfg = getattr(cfg, "text_config", None) or cfg
    heads = cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    e = next(model.parameters()).element_size()
    inter = getattr(cfg, "intermediate_size", 4 * cfg.hidden_size)
    return {"n_layers": cfg.num_hidden_layers, "n_q_heads": heads,
            "n_kv_heads": getattr(cfg, "num_key_value_heads", None) or heads,
            "head_dim": head_dim, "dtype_bytes": e, "prefill_per_token": e * (3 * inter + 4 * cfg.hidden_size)}


class _Footprint:
    """Estimated device bytes of the rows and prefills of a wave (cache.memory.row_footprint_bytes)."""

    def __init__(self, model, tokenizer, record: bool):
        from .cache.batched import default_backend

        self.shape, self.tokenizer, self.record = _model_shape(model), tokenizer, record
        self.host_is_device = next(model.parameters()).device.type == "cpu"  # offloaded stores share the device's RAM
        # the backend decode() will run: the kernels need a bf16/fp16 model and a power-of-two head_dim >= 32
        # (cache.batched.triton_reason); a stack that falls back for a store format is not foreseen here
        d = self.shape["head_dim"]
        fits = next(model.parameters()).dtype in (torch.bfloat16, torch.float16) and d >= 32 and not d & (d - 1)
        self.backend = default_backend(next(model.parameters()).device) if fits else "torch"

    def prompt_len(self, it: _Item) -> int:
        return it.prompt_tokens(self.tokenizer)

    def row(self, it: _Item, cfg: OffloadConfig) -> int:
        from .cache.memory import row_footprint_bytes

        sh = self.shape
        return row_footprint_bytes(cfg, n_layers=sh["n_layers"], n_kv_heads=sh["n_kv_heads"], head_dim=sh["head_dim"],
                                   prompt_len=self.prompt_len(it), new_tokens=it.cap, dtype_bytes=sh["dtype_bytes"],
                                   record=_needs_records(cfg, self.record), backend=self.backend,
                                   n_q_heads=sh["n_q_heads"])

    def host(self, it: _Item, cfg: OffloadConfig) -> int:
        """Host bytes of the row's offloaded stores while its wave is stacked (HOST_COPIES x cache.memory.row_host_bytes)."""
        from .cache.memory import row_host_bytes

        sh = self.shape
        return HOST_COPIES * row_host_bytes(cfg, n_layers=sh["n_layers"], n_kv_heads=sh["n_kv_heads"],
                                            head_dim=sh["head_dim"], prompt_len=self.prompt_len(it),
                                            dtype_bytes=sh["dtype_bytes"])

    def prefill(self, it: _Item, cfgs) -> int:
        """The prefill state (pre-/post-RoPE keys, values), the key SVD when a low-rank method uses it, and the
        prefill's activations (transient)."""
        sh, L = self.shape, self.prompt_len(it)
        HD = sh["n_kv_heads"] * sh["head_dim"]
        state = 3 * L * HD * sh["dtype_bytes"]
        if any(c.kind != "full" and c.rank_for(sh["n_kv_heads"], sh["head_dim"]) > 0 for c in cfgs):
            state += 4 * (L * min(L, HD) + HD * HD + HD)
        return sh["n_layers"] * state + L * sh["prefill_per_token"]


def _next_wave(queue: list, start: int, batch_size: int, free: int | None, fp: _Footprint,
               may_be_empty: bool = False, host_free: int | None = None) -> list:
    """The rows queue[start:...] of the next wave: at most batch_size rows whose estimated device bytes (rows, plus
    each new prefill) fit HEADROOM x `free`, and whose offloaded stores fit HEADROOM x `host_free` (None: no limit).
    A first row that does not fit alone raises RowMemoryError, unless `may_be_empty` (rows still decoding hold memory
    that frees when they finish): then the wave is empty."""
    if free is None and host_free is None:
        return queue[start : start + batch_size]
    limits = {"device": free, "host": host_free}
    budget = {k: None if v is None else int(HEADROOM * v) for k, v in limits.items()}
    wave, used, seen = [], {"device": 0, "host": 0}, set()
    for it, cfg in queue[start : start + batch_size]:
        need = {"device": fp.row(it, cfg), "host": fp.host(it, cfg)}
        if it._state is None and id(it) not in seen:  # a prefill this wave makes (a held one is already allocated)
            need["device"] += fp.prefill(it, it.pending)
        if host_free is None and fp.host_is_device:
            need["device"] += need["host"]
        seen.add(id(it))
        over = [k for k in need if budget[k] is not None and used[k] + need[k] > budget[k]]
        if over:
            k = over[0]
            if not wave and not may_be_empty:
                what = ("its cache, prefill and decode buffers" if k == "device" else
                        f"its offloaded stores, x{HOST_COPIES} while stacked")
                raise RowMemoryError(
                    f"row {it.task.name}/{it.sample.id}/{cfg.name} needs about {need[k] / 2**30:.2f} GiB of {k} memory "
                    f"({need[k]:,} bytes: {what} at {fp.prompt_len(it)} prompt tokens and {it.cap} new tokens) but "
                    f"{limits[k] / 2**30:.2f} GiB ({limits[k]:,} bytes) are free ({HEADROOM:.0%} usable): use a smaller "
                    f"prompt or cap, {'offload' if k == 'device' else 'keep it on the device'}, or a larger machine")
            break
        wave.append((it, cfg))
        used = {k: used[k] + need[k] for k in used}
    return wave


# ---------------------------------------------------------------------------------------------- the run
def _row(item: _Item, cfg: OffloadConfig, cache, out, model_name: str, prediction: str, state, build_s: float,
         decode_s: float, decode_share_s: float, batch_rows: int, batch_methods: str, prov: dict) -> dict:
    task, s = item.task, item.sample
    H, L, d = state.k_pre[0].shape
    return make_row(
        model=model_name, task=task.name, sample_id=s.id, config=cfg, primary_metric=task.primary_metric,
        metrics=_score(task, prediction, s.gold), prediction=prediction, prompt_tokens=L, new_tokens=len(out.token_ids),
        finish_reason=out.finish_reason, token_ids=out.token_ids, n_kv_heads=H, head_dim=d,
        dtype_bits=torch.finfo(state.v[0].dtype).bits, memory=cache.memory_report().to_dict(), prefill_s=state.prefill_s,
        build_s=build_s, decode_s=decode_s, decode_share_s=decode_share_s, batch_rows=batch_rows,
        batch_methods=batch_methods, fallback="; ".join(cache.fallback), recorded=cache.recorder is not None, meta=s.meta,
        provenance=prov)


class _Progress:
    """tqdm bar over cells with decode tokens/s and the count of rows that hit max_new_tokens (never silent)."""

    def __init__(self, total: int, enabled: bool):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="cell", desc="cells", disable=not enabled, dynamic_ncols=True)
        # In logs (no terminal) a redraw per second floods the file: refresh the postfix every 30 s instead.
        self.every = 1.0 if sys.stderr.isatty() else 30.0
        self.tokens, self.length, self.prefills, self.n = 0, 0, 0, 0
        self._t0, self._last = time.perf_counter(), 0.0

    def step(self, n_active: int) -> None:  # called by decode after every batched step
        self.tokens += n_active
        now = time.perf_counter()
        if now - self._last > self.every:
            self._last = now
            self.bar.set_postfix(self._postfix())

    def _postfix(self) -> dict:
        dt = time.perf_counter() - self._t0
        return {"tok/s": f"{self.tokens / dt:.1f}" if dt > 0 else "-", "length": self.length, "prefills": self.prefills}

    def cells(self, n: int, n_length: int) -> None:
        self.n += n
        self.length += n_length
        self.bar.set_postfix(self._postfix(), refresh=False)
        self.bar.update(n)

    def close(self) -> None:
        self.bar.close()


@dataclass(eq=False)
class _Live:
    """A row (item, method) between decode calls: its cache, its tokens so far and what its result row needs."""

    item: _Item
    cfg: OffloadConfig
    cache: object
    state: object
    build_s: float
    tokens: list
    batch_rows: int = 0  # the first decode call it ran in: its rows and methods
    batch_methods: str = ""
    decode_s: float = 0.0
    decode_share_s: float = 0.0  # its share of its decode calls' wall time (results.make_row)


# How often a long decode call stops to store its finished rows: each stop re-stacks the unfinished rows (a second or
# two on a GPU), so a minute keeps that under a few percent while a call cut by a time limit loses at most a minute.
WRITE_EVERY_S = 60.0


def _decode_classes(live: list) -> list[list]:
    """The rows of one decode call split by whether their steps can be replayed from a CUDA graph
    (cache.batched.replayable): a plan replays a step only when every row can, so one recorded row, or one whose
    format the kernels lack, would make the whole wave's step eager. Each class decodes in a call of its own (the
    tokens are the same: a row's tokens do not depend on its batch mates). One class on a CPU."""
    classes: dict[bool, list] = {}
    for r in live:
        classes.setdefault(replayable(r.cache), []).append(r)
    return list(classes.values())


def _run_waves(model, tokenizer, items: list[_Item], out, *, model_name, batch_size, record, rank, prog: _Progress,
               free_memory=None, host_memory=None, refill: bool = False, prefills=None,
               write_every_s: float | None = None) -> list[str]:
    """Rows = (item, method) in order, cut into waves of <= batch_size rows that fit the free device memory
    (_next_wave, measured before each wave; free_memory: a fixed budget in bytes instead) and whose offloaded stores
    fit the host's free RAM (host_memory: a fixed budget instead); a sample's prefill is kept
    until its last row has been built (a sample may straddle two waves), so each sample is prefilled exactly once.

    refill: a decode call returns once half of its rows have finished while rows are still queued; the finished rows
    are written and queued rows take their places beside the unfinished ones in the next call. Without it a wave
    decodes until its last row stops, so one row that runs to its cap keeps the whole wave's step going for a few
    live rows. Tokens are the same either way (a row's tokens never depend on its batch mates).
    write_every_s: a decode call also returns after this many seconds once a row has finished in it; the finished rows
    are written and the others go on (beside queued rows only with refill).

    A row whose cache build raises (anything but running out of memory) is not stored and does not stop the others:
    returns those cells, "task/sample/method: error", for run() to name (a rerun retries them)."""
    stop_ids = stop_token_ids(model, tokenizer)
    writer = ResultsWriter(out, rank=rank)
    rec_writer = ResultsWriter(out, rank=rank, table=RECORDS)
    queue = [(it, c) for it in items for c in it.pending]
    remaining = {id(it): len(it.pending) for it in items}
    device = next(model.parameters()).device
    fp = _Footprint(model, tokenizer, record)
    live: list[_Live] = []
    failed: list[str] = []
    w = 0
    while w < len(queue) or live:
        if w < len(queue) and len(live) < batch_size and (refill or not live):
            free = free_memory if free_memory is not None else free_device_bytes(device)
            if free_memory is not None:  # a fixed budget: the rows still decoding hold their share of it
                free -= sum(fp.row(r.item, r.cfg) for r in live)
            # offloaded stores live in host RAM: measured (on a CPU device, RAM is the device memory measured above
            # and the stores come out of it), or a fixed budget that the rows still decoding hold half of (unstacked)
            if host_memory is not None:
                host = host_memory - sum(fp.host(r.item, r.cfg) // HOST_COPIES for r in live)
            else:
                host = free_host_bytes() if device.type != "cpu" and free_memory is None else None
            wave = _next_wave(queue, w, batch_size - len(live), free, fp, may_be_empty=bool(live), host_free=host)
            w += len(wave)
            for it, cfg in wave:
                if it._state is None:
                    it._state = prefill(model, encode_prompt(tokenizer, it.sample.prompt), store=prefills)
                    prog.prefills += 1
                t0 = time.perf_counter()
                st = it._state
                remaining[id(it)] -= 1
                if remaining[id(it)] == 0:
                    it._state = None  # the row keeps its own reference; drop ours so memory is freed after it
                try:
                    cache = build_cache(model, st, cfg, record=record)
                except torch.OutOfMemoryError:
                    raise
                except Exception as e:  # noqa: BLE001 - one bad cell must not cost the wave (e.g. an SVD failure)
                    cell = f"{it.task.name}/{it.sample.id}/{cfg.name}: {type(e).__name__}: {e}"
                    failed.append(cell)
                    print(f"[runner] cache build failed, cell not stored: {cell}", file=sys.stderr, flush=True)
                    continue
                live.append(_Live(it, cfg, cache, st, time.perf_counter() - t0, [int(st.first_logits.argmax())]))
        if not live:
            continue
        done, still = [], []
        for part in _decode_classes(live):  # one call per class: a row that cannot be replayed keeps no other eager
            methods = ",".join(sorted({r.cfg.name for r in part}))
            for r in part:
                if not r.batch_rows:
                    r.batch_rows, r.batch_methods = len(part), methods
            step_times: list[float] = []

            def on_step(n_active):
                step_times.append(time.perf_counter())
                prog.step(n_active)

            until = len(part) // 2 if refill and w < len(queue) else 0
            before = [len(r.tokens) for r in part]
            t0 = time.perf_counter()
            outs = decode(model, [r.cache for r in part], [r.tokens for r in part], [r.item.cap for r in part],
                          stop_ids, progress=on_step, until_active=until, return_after_s=write_every_s)
            t_end = time.perf_counter()
            made = sum(len(o.token_ids) - n0 for o, n0 in zip(outs, before))
            for r, o, n0 in zip(part, outs, before):
                r.tokens = o.token_ids
                steps = len(o.token_ids) - n0  # steps this row ran in this call
                r.decode_share_s += (t_end - t0) * steps / made if made else 0.0
                if o.finish_reason is None:
                    r.decode_s += t_end - t0
                    still.append(r)
                else:
                    r.decode_s += step_times[steps - 1] - t0 if steps > 0 else 0.0
                    done.append((r, o))
        prov = provenance(model, rank)
        rows, records = [], []
        for r, o in done:
            text = tokenizer.decode(o.token_ids, skip_special_tokens=True) if tokenizer is not None else ""
            it, cfg, cache = r.item, r.cfg, r.cache
            rows.append(_row(it, cfg, cache, o, model_name, text, r.state, r.build_s, r.decode_s, r.decode_share_s,
                             r.batch_rows, r.batch_methods, prov))
            if cache.recorder is not None:
                rec = cache.recorder.frame()
                keys = {"model": model_name, "task": it.task.name, "sample_id": str(it.sample.id), "method": cfg.name,
                        "config_hash": cfg.config_hash()}
                records.extend({**keys, **x} for x in rec.to_dict("records"))
        name = writer.new_name()  # records first, under the rows shard's name: load_records pairs them
        rec_writer.write(records, name=name)
        writer.write(rows, name=name)
        prog.cells(len(rows), sum(x["finish_reason"] == "length" for x in rows))
        live = still
        del outs, rows, records
    return failed


def _summary(df, stats: _Progress, wall: float, world: int) -> None:
    who = f"rank 0 of {world}: " if world > 1 else ""
    print(f"{who}ran {stats.n} cells in {wall:.1f}s: {stats.prefills} prefills, {stats.tokens} decode tokens "
          f"({stats.tokens / wall if wall > 0 else 0:.1f} tok/s), {stats.length} hit max_new_tokens this run")
    if len(df):
        g = df.groupby(["task", "method"], sort=False).agg(
            n=("score", "size"), score=("score", "mean"), length=("finish_reason", lambda x: int((x == "length").sum())),
            new_tokens=("new_tokens", "mean"), device_B_tok_layer=("mem_device_bytes_per_token_layer", "mean"))
        print(g.to_string(float_format=lambda v: f"{v:.2f}"))


def run(model, tokenizer, tasks, methods, out, *, model_name: str, n=None, tokens=None, seed=0, data=None, batch_size=8,
        record=False, max_new_tokens=None, progress=True, dry_run=False, on_device=False, free_memory=None, host_memory=None,
        rates: str | None = None, over_context: str = "error", context: int | None = None, refill: bool = True,
        stored_only: bool = False, prefills=None, write_every_s: float | None = WRITE_EVERY_S):
    """Run every pending (task, sample, method) cell; return the grid's rows from the store (a pandas DataFrame).

    tasks: names, Task objects or (name or Task, samples) pairs; methods: preset names or OffloadConfigs.
    n, tokens, seed, data: passed to Task.load for tasks given by name. batch_size: rows (sample x method) per
    batched decode, an upper bound: each wave takes as many rows as fit the device's free memory (measured before
    the wave: torch.cuda.mem_get_info on CUDA, available RAM on CPU; rows estimated by
    cache.memory.row_footprint_bytes), and a row that cannot fit alone raises RowMemoryError naming its bytes and the
    free memory. free_memory: a fixed budget in bytes instead of the measured one (tests). max_new_tokens: override every sample's cap (note: not part of the cell key). record: also
    store attention-level records under out/records/. dry_run: print the grid, what is done, what would run and an
    estimated cost, with the GPU time at the rates measured in `rates` (a benchmarks/bench_runner.py JSON; default:
    the committed run with this run's placement of values, rates_for); return the plan (one row per sample) without running anything. on_device: run every method with
    offload=False (everything on the compute device): placement changes speed and memory, never the numbers, and the
    config column (and hash) records it. over_context: "error" (raise ContextLengthError naming every sample whose
    prompt plus cap exceeds the model's context) or "skip" (leave those cells out and print them); context: the
    window in tokens (default: the model's config.max_position_embeddings; a dry run without a model checks nothing
    unless it is given). refill: queued rows take the places of finished ones once half of a call's rows have
    finished, instead of each wave decoding until its last row stops (_run_waves); the tokens are the same.
    stored_only: run nothing; return the grid's stored rows, or raise MissingCells naming every cell not stored (a
    CPU drawing figures from a store that a GPU filled). prefills: a folder (or PrefillStore) of exact prefills shared
    between runs (prefill_store: bit-identical states; worth it on a CPU only). write_every_s: a decode call returns
    after this many seconds once one of its rows has finished, and the finished rows are stored (None: only when
    the call ends); the tokens are the same.
    """
    if over_context not in OVER_CONTEXT:
        raise ValueError(f"over_context={over_context!r}: must be one of {OVER_CONTEXT}")
    if context is None and model is not None:
        context = context_tokens(model.config)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r}: must be an int >= 1")
    if write_every_s is not None and (isinstance(write_every_s, bool) or not isinstance(write_every_s, (int, float))
                                      or not write_every_s > 0):
        raise ValueError(f"write_every_s={write_every_s!r}: must be a number of seconds > 0, or None")
    for name, v in (("refill", refill), ("stored_only", stored_only)):
        if not isinstance(v, bool):
            raise ValueError(f"{name}={v!r}: must be True or False")
    for name, v in (("free_memory", free_memory), ("host_memory", host_memory)):
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{name}={v!r}: must be None (measure the {'device' if name == 'free_memory' else 'host'}) "
                             "or an int of bytes >= 1")
    if prefills is not None and not isinstance(prefills, PrefillStore):
        prefills = PrefillStore(prefills)
    cfgs = resolve_methods(methods)
    if on_device:
        cfgs = [c.replace(offload=False) for c in cfgs]
    task_samples = resolve_tasks(tasks, n=n, tokens=tokens, seed=seed, data=data, tokenizer=tokenizer)
    rank, world, local_rank = dist_env()
    done = _done_cells(out, cfgs, record)
    if stored_only or dry_run:  # the whole grid, planned once (stored_only warns of nothing)
        items = _fit_context(_plan(task_samples, cfgs, done, model_name, max_new_tokens, 0, 1), tokenizer, context,
                             over_context, quiet=stored_only or rank != 0)
    if stored_only:
        missing = [f"{it.task.name}/{it.sample.id}/{c.name}" for it in items for c in it.pending]
        if missing:
            raise MissingCells(missing, out)
        return _select(load(out), task_samples, cfgs, model_name)
    if dry_run:  # printed once
        rates = measured_rates(rates) if rates else dry_run_rates(on_device, refill)
        return (_print_dry_run(items, cfgs, tokenizer, out, rates, record=record, on_device=on_device)
                if rank == 0 else None)

    import torch.distributed as dist

    own_group = False
    if world > 1:
        if torch.cuda.is_available():
            torch.cuda.set_device(local_rank)
            dev = torch.device("cuda", local_rank)
            if next(model.parameters()).device != dev:
                model.to(dev)
                model.__dict__.pop("_skv_contexts", None)  # cached per-layer contexts name the old device
        if not dist.is_initialized():
            import datetime

            # Ranks finish unevenly (prompt lengths, early stops): the only collective is the final barrier, so give
            # it a long timeout rather than the default 30 minutes.
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo", timeout=datetime.timedelta(days=7))
            own_group = True

    items = _plan(task_samples, cfgs, done, model_name, max_new_tokens, rank, world)
    items = _fit_context([it for it in items if it.pending], tokenizer, context, over_context, quiet=rank != 0)
    prog = _Progress(sum(len(it.pending) for it in items), enabled=progress and rank == 0)
    t0 = time.perf_counter()
    try:
        failed = _run_waves(model, tokenizer, items, out, model_name=model_name, batch_size=batch_size, record=record,
                            rank=rank, prog=prog, free_memory=free_memory, host_memory=host_memory, refill=refill,
                            prefills=prefills, write_every_s=write_every_s)
    finally:
        prog.close()
    wall = time.perf_counter() - t0
    if world > 1:
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[local_rank])
        else:
            dist.barrier()
        if own_group:
            dist.destroy_process_group()
    df = _select(load(out), task_samples, cfgs, model_name)
    if progress and rank == 0:
        _summary(df, prog, wall, world)
        sys.stdout.flush()
    if failed:
        raise CellsFailed(failed)
    return df


class CellsFailed(RuntimeError):
    """Cells whose cache build raised: not stored (every other cell was); a rerun of the grid retries them."""

    def __init__(self, cells: list[str]):
        self.cells = cells
        super().__init__(f"{len(cells)} cell(s) failed and were not stored (the others were; rerun to retry them):\n  "
                         + "\n  ".join(cells))


class MissingCells(LookupError):
    """Cells of a stored-only grid that the store does not hold."""

    def __init__(self, cells: list[str], out):
        self.cells = cells
        by_method = collections.Counter(c.rsplit("/", 1)[1] for c in cells)
        super().__init__(f"{len(cells)} cell(s) of this grid are not in the store {out} (stored_only runs none): "
                         + ", ".join(f"{m} x {k}" for m, k in by_method.items()) + "; first: " + ", ".join(cells[:3])
                         + ". Run them where a GPU is (docs/reproduction.md), or leave stored_only off.")


def _select(df, task_samples, cfgs, model_name: str):
    """Rows of this grid only (a store may hold other models, tasks or methods)."""
    if not len(df):
        return df
    cells = {(t.name, str(s.id), c.config_hash()) for t, ss in task_samples for s in ss for c in cfgs}
    keep = [(m == model_name and (t, s, h) in cells) for m, t, s, h in zip(df.model, df.task, df.sample_id, df.config_hash)]
    return df[keep].reset_index(drop=True)

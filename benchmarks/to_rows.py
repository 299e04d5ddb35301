"""Benchmark rows (shadowkv_lab.results.BENCH_COLUMNS) from what each benchmark measured, and the one-time
conversion of the committed measurement files under benchmarks/results/ into benchmarks/results/bench.rows.csv.

    python benchmarks/to_rows.py [--results benchmarks/results] [--out benchmarks/results/bench.rows.csv]

The benchmark scripts import the *_rows builders below and write `<name>.rows.csv` next to their JSON; the
conversion runs the same builders on the committed JSON files, so old and new measurements share one schema.
Converted: decode_step.json and decode_step_exact_higgs.json (their .csv files hold the same step rows, checked
here), scoring_sweep_h200.json, capacity.json, cache_step_cpu.json, runner_cpu.json, runner_cpu_per_row.json,
runner_h200.json, profile_step_h200.json, quant_error.json, kernels_e2e.json. Not converted: the Text2JSON
difficulty searches (text2json_*; accuracy, not speed) and key_offset/ (its own per-layer diagnostics tables).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shadowkv_lab.results import bench_row, write_bench_rows  # noqa: E402

LAYER_MODEL = "llama-3.1-8b layer (32 q heads, 8 kv heads, d 128)"  # the shapes bench_decode_step.py times
STEP_METRICS = {"ms": "step_ms", "bound_ms": "bound_ms", "sum_bound_ms": "sum_bound_ms", "triton_ms": "triton_ms",
                "sdpa_ms": "sdpa_ms", "ratio": "ratio_to_bound", "tokens_per_s_layer": "tok_s_layer", "hit_rate": "hit_rate",
                "hbm_bytes": "hbm_bytes", "pcie_bytes": "pcie_bytes", "pcie_gbs": "pcie_gb_s", "rows_fetched": "rows_fetched",
                "rows_selected": "rows_selected", "union_tokens": "union_tokens"}
SCORING_METRICS = {"ms": "call_ms", "ns_per_landmark": "ns_per_landmark", "bytes_per_landmark": "bytes_per_landmark", "gbs": "gb_s"}
ZERO_COPY_METRICS = {"zero_copy_gbs": "zero_copy_gb_s", "memcpy_gbs": "memcpy_gb_s", "mrows_per_s": "mrows_s"}
CAPACITY_METRICS = {"max_batch": "max_batch", "batch_vs_full": "batch_vs_full", "bytes_per_token_layer": "bytes_per_token_layer",
                    "gb_per_sequence": "gb_per_sequence"}
CACHE_STEP_METRICS = {"ms_per_step": "step_ms", "tokens_per_s": "tok_s", "ratio_to_full": "ratio_to_full",
                      "device_B_per_token_layer": "device_bytes_per_token_layer",
                      "offloaded_B_per_token_layer": "offloaded_bytes_per_token_layer"}
RUNNER_METRICS = {"wall_s": "wall_s", "cells": "cells", "prefills": "prefills", "prefill_tokens": "prefill_tokens",
                  "prefill_s": "prefill_s", "decode_tokens": "decode_tokens", "decode_s": "decode_s", "decode_tok_s": "tok_s",
                  "cells_per_s": "cells_per_s", "wall_s_grid_estimate": "wall_s_grid_estimate",
                  "decode_steps": "decode_steps", "decode_calls": "decode_calls", "live_rows_mean": "live_rows_mean",
                  "step_ms": "step_ms"}
PROFILE_METRICS = {"step_ms": "step_ms", "tok_s": "tok_s", "bound_ms": "bound_ms", "rows": "rows",
                   "weight_bytes": "weight_bytes", "device_kv_bytes": "device_kv_bytes", "setup_ms": "setup_ms",
                   "capture_ms": "capture_ms", "eager_step_ms": "eager_step_ms"}
OP_METRICS = {"count": "op_count", "self_device_us": "self_device_us", "self_cpu_us": "self_cpu_us"}
E2E_METRICS = {"tokens_per_s": "tok_s", "decode_s": "decode_s", "hit_rate": "hit_rate", "cache_gpu_gb": "cache_gpu_gb"}
QUANT_METRICS = {"bits_per_dim": "bits_per_dim", "rel_mse_gaussian": "rel_mse_gaussian", "rel_mse_real": "rel_mse_real"}
AGREEMENT_METRICS = {"identical": "identical", "first_divergence": "first_divergence", "n_tokens": "n_tokens",
                     "reference_margin_at_divergence": "reference_margin", "max_logit_diff_before": "max_logit_diff",
                     "median_logit_diff_before": "median_logit_diff", "kernels_s": "kernels_s", "reference_s": "reference_s"}


def stamp(benchmark: str, device_name: str, run: str | None = None, commit: str | None = None,
          timestamp: str | None = None) -> dict:
    """The fields every row of one run shares. Defaults: now (UTC, ISO 8601), this checkout's commit, and a run id
    made of the benchmark, the device and the time."""
    if timestamp is None:
        timestamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    if commit is None:
        from shadowkv_lab.provenance import git_commit

        commit = git_commit() or ""
    if run is None:
        dev = re.sub(r"[^a-z0-9]+", "-", device_name.lower()).strip("-")
        run = f"{benchmark}-{dev}-{re.sub(r'[^0-9T]', '', timestamp)[:15]}"
    return dict(benchmark=benchmark, run=run, device_name=device_name, commit=commit, timestamp=timestamp)


def rows_of(values: dict, metrics: dict, **fields) -> list[dict]:
    """One row per metric of `metrics` ({field of values: metric}) whose value is a number (None / NaN skipped)."""
    out = []
    for key, metric in metrics.items():
        v = values.get(key)
        if v is None or isinstance(v, str) or (isinstance(v, float) and math.isnan(v)):
            continue
        out.append(bench_row(metric=metric, value=v, **fields))
    return out


def _method_variant(name: str, cached: bool = True) -> tuple[str, str]:
    """A step benchmark's method name -> (method, variant): '<m>_nocache' -> (m, 'nocache'); full -> ('full', '');
    another offloaded method -> (m, 'cache') (the previous step's rows stay resident)."""
    if name.endswith("_nocache"):
        return name[: -len("_nocache")], "nocache"
    return name, "" if name == "full" else "cache"


def decode_step_rows(results: dict, st: dict, scoring_context: int, scoring_batch: int) -> list[dict]:
    """bench_decode_step.py's results dict (steps, scoring, hits, zero_copy) -> rows. scoring_context / _batch: the
    context and batch the scoring kernel was timed at (the script's largest context, min(8, largest batch))."""
    rows = []
    for r in results.get("steps", []):
        method, variant = _method_variant(r["method"])
        rows += rows_of(r, STEP_METRICS, table="steps", model=LAYER_MODEL, method=method, variant=variant,
                        context=r["L"], batch=r["B"], **st)
        for phase, ms in (r.get("phases") or {}).items():
            rows.append(bench_row(table="step_phases", model=LAYER_MODEL, method=method, variant=f"{variant}/{phase}",
                                  context=r["L"], batch=r["B"], metric="phase_ms", value=ms, **st))
    for r in results.get("scoring", []):
        method = "topk" if r["landmarks"] == "-" else r["landmarks"]
        rows += rows_of(r, SCORING_METRICS, table="scoring", model=LAYER_MODEL, method=method, variant=r["rule"],
                        context=scoring_context, batch=scoring_batch, **st)
    for r in results.get("hits", []):
        rows += rows_of(r, {"hit_rate": "hit_rate"}, table="hits", model=LAYER_MODEL, method=r["method"],
                        variant=f"alpha={r['alpha']:g}", context=r["L"], batch=1, **st)
    for r in results.get("zero_copy") or []:
        rows += rows_of(r, ZERO_COPY_METRICS, table="zero_copy", method="gather_rows",
                        variant=f"{r['row_bytes']} B rows, block {r['block']}, {r['warps']} warps", detail=f"rows={r['rows']}", **st)
    return rows


def capacity_rows(cap: list[dict], st: dict, model: str = "llama-3.1-8b") -> list[dict]:
    """bench_capacity.py's rows (method, context, max_batch, parts, tokens_per_s[variant], verify) -> rows."""
    rows = []
    for r in cap:
        common = dict(table="capacity", model=model, context=r["context"], detail=f"gen={r['gen']}", **st)
        rows += rows_of(r, CAPACITY_METRICS, method=r["method"], **common)
        for part, gb in (r.get("parts") or {}).items():
            rows += rows_of({"gb": gb}, {"gb": "part_gb"}, method=r["method"], variant=part, **common)
        for k, v in r.items():
            if k.startswith("tokens_per_s["):
                method, variant = _method_variant(k[len("tokens_per_s["):-1])
                rows += rows_of({"v": v}, {"v": "tok_s"}, method=method, variant=variant, batch=r["max_batch"], **common)
        v = r.get("verify")
        if v:
            rows += rows_of({"f": v["fits"], "n": v["next_fails"], "a": v.get("allocated_gb")},
                            {"f": "verify_fits", "n": "verify_next_fails", "a": "verify_allocated_gb"},
                            method=r["method"], batch=v["batch"], **common)
    return rows


def cache_step_rows(data: dict, st: dict) -> list[dict]:
    """bench_cache_step.py's {'meta', 'rows'} -> rows (one decode step of a real model through our cache)."""
    m = data["meta"]
    detail = f"dtype={m.get('dtype')} steps={m.get('steps')} threads={m.get('threads')}"
    rows = []
    for r in data["rows"]:
        rows += rows_of(r, CACHE_STEP_METRICS, table="steps", model=m["model"], method=r["method"], context=m["tokens"],
                        batch=1, detail=detail, **st)
    return rows


def runner_rows(result: dict, st: dict) -> list[dict]:
    """bench_runner.py's result ({'args', 'runner', 'naive', speedup, ...}) -> rows; table 'runner' / 'naive' per
    loop, 'comparison' for the speedup and the identical-results checks."""
    a = result["args"]
    common = dict(model=str(a["model"]), context=a["tokens"], batch=a["batch_size"], **st,
                  detail=(f"task={a['task']} n={a['n']} max_new_tokens={a['max_new_tokens']} per_row={a['per_row']} "
                          f"on_device={a['on_device']} {'refill=%s ' % a['refill'] if 'refill' in a else ''}"
                          f"methods={a['methods']}")[:300])
    rows = rows_of(result, {"prompt_tokens_mean": "prompt_tokens_mean"}, table="runner", **common)
    for loop in ("runner", "naive"):
        if result.get(loop):
            rows += rows_of(result[loop], RUNNER_METRICS, table=loop, **common)
    rows += rows_of(result, {"speedup": "speedup", "identical_tokens": "identical_tokens", "identical_scores": "identical_scores"},
                    table="comparison", **common)
    return rows


def profile_rows(res: dict, st: dict) -> list[dict]:
    """profile_step.py's result -> rows: table 'step' (step time, tokens/s, bound, bytes, stacking, first step), 'ops'
    (the top ops) and 'groups' (each method's attention steps in an eager step)."""
    common = dict(model=res["model"], batch=res["rows"], **st)
    detail = f"task={res['task']} samples={res['samples']} steps={res['steps']} on_device={res['on_device']} methods={','.join(res['methods'])}"
    rows = rows_of(res, PROFILE_METRICS, table="step", detail=detail[:300], **common)
    for op in res.get("ops", []):
        rows += rows_of(op, OP_METRICS, table="ops", method=op["name"], **common)
    for g in res.get("groups", []):  # per method: its attention steps of one eager step
        rows += rows_of(g, {"group_ms": "group_ms"}, table="groups", method=g["method"], model=res["model"], batch=g["rows"],
                        **st)
    return rows


def e2e_rows(rows_in: list[dict], st: dict, model: str) -> list[dict]:
    """bench_e2e.py's rows (method, B, context, kernels, tokens_per_s, ...) -> rows of table 'e2e'."""
    rows = []
    for r in rows_in:
        rows += rows_of(r, E2E_METRICS, table="e2e", model=model, method=r["method"], context=r["context"], batch=r["B"],
                        variant="kernels" if r.get("kernels") else "reference", detail=f"new={r['new']}", **st)
    return rows


def quant_rows(data: dict, st: dict) -> list[dict]:
    """quant_error.py's {'model', 'prompt_tokens', 'rows'} -> rows of table 'quant_error' (method: the format)."""
    rows = []
    for r in data["rows"]:
        rows += rows_of(r, QUANT_METRICS, table="quant_error", model=data["model"], method=r["format"],
                        variant=f"{r['use']}, group {r['group']}", context=data["prompt_tokens"], **st)
    return rows


def agreement_rows(data: dict, st: dict) -> list[dict]:
    """check_kernels_e2e.py's {'model', 'rows'} -> rows of table 'agreement' (variant: the prompt's seed)."""
    rows = []
    for r in data["rows"]:
        rows += rows_of(r, AGREEMENT_METRICS, table="agreement", model=data["model"], method=r["method"],
                        variant=f"seed={r['seed']}", context=r["prompt_tokens"], batch=1, **st)
    return rows


# The commit that last changed each committed file and its time: the provenance of files that carry none of their
# own (the measuring code is at or before that commit).
COMMITTED = {
    "decode_step.json": ("30b4460", "2026-11-28T18:58:43+00:00"),
    "decode_step_exact_higgs.json": ("d39358e", "2026-11-29T00:06:59+00:00"),
    "scoring_sweep_h200.json": ("bd8d146", "2026-11-29T01:07:38+00:00"),
    "capacity.json": ("30b4460", "2026-11-28T18:58:43+00:00"),
    "cache_step_cpu.json": ("30b4460", "2026-11-28T18:58:43+00:00"),
    "quant_error.json": ("50a1840", "2026-11-28T19:22:33+00:00"),
    "kernels_e2e.json": ("bd8d146", "2026-11-29T01:07:38+00:00"),
}


def _committed(name: str, benchmark: str, device_name: str) -> dict:
    commit, ts = COMMITTED[name]
    return stamp(benchmark, device_name, run=Path(name).stem, commit=commit, timestamp=ts)


def _check_step_csv(steps: list[dict], path: Path) -> None:
    """The committed step CSV holds the JSON's step rows: same methods, shapes and times (nothing only in the CSV)."""
    with open(path) as f:
        table = list(csv.DictReader(f))
    if len(table) != len(steps):
        raise ValueError(f"{path}: {len(table)} rows, its JSON has {len(steps)} steps")
    for c, j in zip(table, steps):
        if (c["method"], int(c["L"]), int(c["B"])) != (j["method"], j["L"], j["B"]) or not math.isclose(float(c["ms"]), j["ms"]):
            raise ValueError(f"{path}: row {c} differs from the JSON's step {j}")


def convert(results_dir) -> list[dict]:
    """Rows of every committed measurement file under `results_dir` (see the module docstring for which)."""
    d = Path(results_dir)
    load = lambda name: json.loads((d / name).read_text())  # noqa: E731
    rows = []
    for name in ("decode_step.json", "decode_step_exact_higgs.json"):
        res = load(name)
        cfg = res["config"]
        if (d / name.replace(".json", ".csv")).exists():
            _check_step_csv(res["steps"], d / name.replace(".json", ".csv"))
        rows += decode_step_rows(res, _committed(name, "bench_decode_step", res["device"]),
                                 scoring_context=max(cfg["contexts"]), scoring_batch=min(8, max(cfg["batches"])))
    sweep = load("scoring_sweep_h200.json")  # --scoring-only at the default sizes: 128k x batch 8
    rows += decode_step_rows(sweep, _committed("scoring_sweep_h200.json", "bench_decode_step", sweep["device"]),
                             scoring_context=131072, scoring_batch=8)
    rows += capacity_rows(load("capacity.json"), _committed("capacity.json", "bench_capacity", "NVIDIA H200"))
    cs = load("cache_step_cpu.json")
    rows += cache_step_rows(cs, _committed("cache_step_cpu.json", "bench_cache_step", cs["meta"]["device"]))
    for name in ("runner_cpu.json", "runner_cpu_per_row.json", "runner_h200.json"):
        res = load(name)
        p = res["provenance"]
        rows += runner_rows(res, stamp("bench_runner", p["device_name"], run=Path(name).stem, commit=p["git_commit"],
                                       timestamp=p["timestamp"]))
    prof = load("profile_step_h200.json")
    rows += profile_rows(prof, stamp("profile_step", prof["device_name"], run="profile_step_h200", commit=prof["git_commit"],
                                     timestamp=prof["timestamp"]))
    rows += quant_rows(load("quant_error.json"), _committed("quant_error.json", "quant_error", "cpu"))
    k = load("kernels_e2e.json")
    rows += agreement_rows(k, _committed("kernels_e2e.json", "check_kernels_e2e", k["device"]))
    return rows


def main(argv=None) -> int:
    here = Path(__file__).resolve().parent / "results"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(here), help="folder of the committed measurement files")
    ap.add_argument("--out", default=str(here / "bench.rows.csv"))
    a = ap.parse_args(argv)
    rows = convert(a.results)
    path = write_bench_rows(rows, a.out)
    counts = {}
    for r in rows:
        counts[r["run"]] = counts.get(r["run"], 0) + 1
    for run, n in counts.items():
        print(f"{run:32s} {n:5d} rows")
    print(f"wrote {len(rows)} rows to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

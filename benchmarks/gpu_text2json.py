"""Text2JSON at real scale on a GPU: difficulty calibration (full attention) and the method comparison.

    python benchmarks/gpu_text2json.py --phase calibrate --model qwen2.5-coder-1.5b --out results/gpu
    python benchmarks/gpu_text2json.py --phase compare  --model qwen2.5-coder-1.5b --out results/gpu --gold-per-1k 1.5
    python benchmarks/gpu_text2json.py --phase search   --model qwen2.5-coder-1.5b --out results/gpu

search: `full` on n samples of every generator setting in SETTINGS at the first length, then, in order of closeness
to a score of 65, each setting inside [40, 90] at the other lengths until one is inside at all of them (--grid: every
setting at every length, then the one inside at all lengths with the smallest worst distance to 65); writes
calibration.json (per setting and length: mean score, cap hits, new tokens) next to the results.

calibrate: `full` on n samples at each length x gold density (gold entities per 1k prompt tokens); the task is
informative when full attention lands between 40 and 90.
compare: the study's methods on the same samples at the chosen density.
Accuracy runs keep every tensor on the GPU (offload=False): placement changes speed, never the numbers.
Rows go to the results store under --out (resumable); a summary table is printed last.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

from shadowkv_lab import get_preset, load_model, run
from shadowkv_lab.tasks import get_task

COMPARE = "full,shadowkv,shadowkv_scaled,shadowkv_fullkeys,shadowkv_oracle,oracle,yakv,yakv_residual"


# Generator settings tried by --phase search (Text2JSONConfig knobs), by name, with the search that introduced them:
# text2json_calibration/settings.json; what each search tried and found: text2json_calibration/README.md.
CALIBRATION = Path(__file__).resolve().parent / "text2json_calibration"


def load_settings(path=CALIBRATION / "settings.json") -> tuple[dict[str, dict], dict[str, int]]:
    """(name -> Text2JSONConfig knobs, name -> search number) from the settings file, in its order."""
    data = json.loads(Path(path).read_text())
    return {k: v["knobs"] for k, v in data.items()}, {k: v["search"] for k, v in data.items()}


SETTINGS, SEARCH = load_settings()


# The ids samples_for gives a setting's samples (t{tokens}_{setting}_s{seed}_{index}), parsed back by text2json_tail.py
SAMPLE_ID = re.compile(r"^t(?P<tokens>\d+)_(?P<setting>.+)_s(?P<seed>\d+)_(?P<index>\d+)$")


def samples_for(tok, tokens: int, gold_per_1k: float, n: int, seed: int, setting: str | None = None):
    task = get_task("text2json")
    kw = SETTINGS[setting] if setting else dict(gold_per_1k_tokens=gold_per_1k)
    samples = task.load(n=n, tokens=tokens, seed=seed, tokenizer=tok, **kw)
    for i, s in enumerate(samples):  # ids that name the difficulty, so cells never collide across settings
        s.id = f"t{tokens}_{setting}_s{seed}_{i}" if setting else f"t{tokens}_g{gold_per_1k:g}_s{seed}_{i}"
        s.meta["gold_per_1k"] = kw.get("gold_per_1k_tokens", 0.0)
        s.meta["setting"] = setting or ""
    return task, samples


def search(model, tok, name, args) -> None:
    """Calibrate the generator: see the module docstring."""
    import pandas as pd

    from shadowkv_lab.results import load
    from shadowkv_lab.tasks.text2json_score import ending, error_breakdown

    lengths = [int(t) for t in args.tokens.split(",")]
    cfg = [get_preset("full").replace(offload=False)]

    table: list[dict] = []
    calib = Path(args.out, "calibration.json")

    def save(chosen=None):  # after every evaluation: a run cut short by a time limit keeps what it measured
        calib.write_text(json.dumps({"model": name, "n": args.n, "seed": args.seed, "settings": SETTINGS, "rows": table,
                                     "chosen": chosen}, indent=2))

    def evaluate(tokens, settings):
        grid = [samples_for(tok, tokens, 0, args.n, args.seed, st) for st in settings]
        task = grid[0][0]
        bs = max(1, args.batch_size * 8192 // tokens)  # --batch-size is for 8k prompts: same tokens in flight
        run(model, tok, [(task, [s for _, ss in grid for s in ss])], cfg, args.out, model_name=name, batch_size=bs)
        df = load(args.out)
        rows = {}
        for st, (_, samples) in zip(settings, grid):
            d = df[(df["model"] == name) & df["sample_id"].str.startswith(f"t{tokens}_{st}_s{args.seed}_")]
            by_id = {s.id: s for s in samples}
            errors = pd.DataFrame([error_breakdown(r.prediction, by_id[r.sample_id].gold, by_id[r.sample_id].meta.get("entities"))
                                   for r in d.itertuples()]).sum().to_dict()
            rows[st] = dict(tokens=tokens, setting=st, score=float(d["score"].mean()), lenient=float(d["metric_score_lenient"].mean()),
                            salvaged=float(d["metric_score_salvaged"].mean()), n=int(len(d)),
                            cap_hits=int((d["finish_reason"] == "length").sum()), new_tokens=float(d["new_tokens"].mean()),
                            prompt_tokens=float(d["prompt_tokens"].mean()), errors={k: int(v) for k, v in errors.items()},
                            endings={k: int(v) for k, v in d["prediction"].map(ending).value_counts().items()})
            print(json.dumps(rows[st]), flush=True)
            table.append(rows[st])
            save()
        return rows

    names = args.settings.split(",") if args.settings else list(SETTINGS)
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise SystemExit(f"--settings: unknown {unknown}; allowed: {', '.join(SETTINGS)}")
    if args.grid:  # every setting at every length (one wave per length), then the best inside at all of them
        by_len = {t: evaluate(t, names) for t in lengths}
        ok = [st for st in names if all(40 <= by_len[t][st]["score"] <= 90 for t in lengths)]
        chosen = min(ok, key=lambda st: max(abs(by_len[t][st]["score"] - 65) for t in lengths), default=None)
        save(chosen)
        print("chosen:", chosen)
        return
    first = list(evaluate(lengths[0], names).values())
    inside = sorted((r for r in first if 40 <= r["score"] <= 90), key=lambda r: abs(r["score"] - 65))
    chosen = None
    for r in inside:
        later = [evaluate(t, [r["setting"]])[r["setting"]] for t in lengths[1:]]
        if all(40 <= x["score"] <= 90 for x in later):
            chosen = r["setting"]
            break
    save(chosen)
    print("chosen:", chosen)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--phase", choices=["calibrate", "compare", "search"], required=True)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokens", default="8192,16384")
    ap.add_argument("--gold-per-1k", default="0.75,2.0", help="calibrate: densities to try; compare: the chosen one")
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--methods", default=COMPARE)
    ap.add_argument("--batch-size", type=int, default=40, help="at 8k prompts; search scales it by 8192 / tokens")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--settings", default=None, help="search: comma-separated SETTINGS names (default: all)")
    ap.add_argument("--grid", action="store_true", help="search: every setting at every length, no early stop")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"],
                    help="model dtype (bf16 is the study's; fp32 tests whether the 16k loops are numerical)")
    args = ap.parse_args(argv)

    model, tok = load_model(args.model, dtype=args.dtype)
    name = args.model.rstrip("/").split("/")[-1]
    if args.dtype != "bf16":  # another model name: the store keeps (and resumes) the rows of each dtype apart
        name = f"{name}-{args.dtype}"
    if args.phase == "search":
        return search(model, tok, name, args)
    methods = ["full"] if args.phase == "calibrate" else args.methods.split(",")
    cfgs = [get_preset(m).replace(offload=False) for m in methods]
    tasks = []
    for tokens in map(int, args.tokens.split(",")):
        for g in map(float, args.gold_per_1k.split(",")):
            task, samples = samples_for(tok, tokens, g, args.n, args.seed)
            tasks.append((task, samples))
    df = None
    for task, samples in tasks:  # one grid per setting keeps waves homogeneous in length
        df = run(model, tok, [(task, samples)], cfgs, args.out, model_name=name, batch_size=args.batch_size)
    from shadowkv_lab.results import load

    df = load(args.out)
    df["tokens"] = df["sample_id"].str.extract(r"^t(\d+)_")[0].astype(int)
    df["gold_per_1k"] = df["sample_id"].str.extract(r"_g([\d.]+)_")[0].astype(float)
    tab = df.groupby(["tokens", "gold_per_1k", "method"]).agg(
        score=("score", "mean"), lenient=("metric_score_lenient", "mean"), n=("score", "size"),
        prompt_tokens=("prompt_tokens", "mean"), new_tokens=("new_tokens", "mean"),
        truncated=("finish_reason", lambda s: int((s == "length").sum())), decode_tok_s=("decode_tok_s", "mean"),
    ).round(2)
    print(tab.to_string())
    print(f"device: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu'}")


if __name__ == "__main__":
    main()

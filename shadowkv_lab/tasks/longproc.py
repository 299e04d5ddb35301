"""LongProc HTML-to-TSV: loader for the published layout, and the reference scorer.

Published layout (princeton-pli/LongProc, `data/html_to_tsv/`):
    html_to_tsv_{0.5k,2k,8k}.json   JSON list of {output_length_group, task_id, website_id, html_path,
                                    task_topic, task_description, gt, tsv_header, filtering_instruction}
    prompts.yaml                    USER_PROMPT with {html_str} {task_topic} {task_description}
                                    {filtering_instruction} {tsv_header}
    webpage/*.html                  the pages; html_path is repo-relative ("./data/html_to_tsv/webpage/W309_0.5k_1.html")
`load_longproc(path)` accepts that folder, its parent, or one split file; html_path is resolved
against the folder, its ancestors, and finally <folder>/webpage/<file name>. The paper uses the 8k
split (120 samples, 9216 new tokens); 2k gets 2048 and 0.5k 1024.

Scorer = the reference `eval_html_to_tsv` + `evaluate_html_to_csv_compute_metrics`, as 0..100:
take the text after ```tsv (greedy to the last ```; no fence: the whole output), parse with csv
(tab), first row = header (not scored), drop a wrong-length last row, other wrong-length rows become
all "N/A"; normalise cells (lowercase, strip punctuation, drop a/an/the, collapse whitespace, then
remove all spaces); precision = share of predicted rows equal to some gold row, recall = share of
gold rows equal to some predicted row (cells by position), F1. Any parse failure -> 0 (the reference
also fails, hence 0, when the predicted header has another width than the gold's, or when either
side has no data rows).
"""

from __future__ import annotations

import csv
import json
import re
import string
import warnings
from pathlib import Path

from .base import Sample, Task, looks_like_records
from .tokens import annotate_lengths

TASK_DIR = "html_to_tsv"
MAX_NEW_TOKENS = {"0.5k": 1024, "2k": 2048, "8k": 9216}
FIELDS = ("output_length_group", "task_id", "website_id", "html_path", "task_topic", "task_description", "gt",
          "tsv_header", "filtering_instruction")
FIXTURE = Path(__file__).parent / "fixtures" / "longproc"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# Used only when a hub copy or split file comes without prompts.yaml (our wording, same placeholders).
DEFAULT_USER_PROMPT = (
    "[TASK]\nBelow is the HTML source of a web page about {task_topic}. Extract every item with these fields: "
    "{task_description}. {filtering_instruction}\nWrite the items as a TSV table inside a ```tsv code block, "
    "starting with this header row:\n{tsv_header}\nOne row per item, in page order, tab-separated; write N/A for a "
    "missing field.\n\n[HTML]\n{html_str}\n"
)

# -- scorer ----------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCT = frozenset(string.punctuation)
_FENCE = re.compile(r"```tsv([\s\S]*)```")
_ZERO = {"f1": 0.0, "precision": 0.0, "recall": 0.0}


def normalize_cell(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split()).replace(" ", "")


def extract_tsv(prediction: str) -> str:
    m = _FENCE.search(prediction)
    if m is not None:
        return m.group(1).strip()
    if "```tsv" in prediction:
        prediction = prediction.split("```tsv")[1]
    return prediction.strip()


def parse_tsv(text: str) -> tuple[list[str], list[tuple[str, ...]]] | None:
    """(header, normalised rows), or None where the reference's parser fails."""
    try:
        data = list(csv.reader(text.strip().split("\n"), delimiter="\t"))
    except csv.Error:
        return None
    if len(data) < 2:  # header only (or nothing): the reference indexes data[-1] of an empty list
        return None
    header, rows = data[0], data[1:]
    if len(rows[-1]) != len(header):  # likely a trailing remark ("That is the table.")
        rows = rows[:-1]
    width = len(header)
    fixed = [r if len(r) == width else ["N/A"] * width for r in rows]
    return header, [tuple(normalize_cell(c) for c in r) for r in fixed]


def score(prediction: str, gold_tsv: str) -> dict[str, float]:
    """{'f1', 'precision', 'recall'} in 0..100; never raises."""
    try:
        gold = parse_tsv(gold_tsv)
        pred = parse_tsv(extract_tsv(prediction)) if isinstance(prediction, str) else None
        if gold is None or pred is None:
            return dict(_ZERO)
        (gh, grows), (ph, prows) = gold, pred
        if len(gh) != len(ph) or not grows or not prows:
            return dict(_ZERO)
        gset, pset = set(grows), set(prows)
        precision = sum(r in gset for r in prows) / len(prows)
        recall = sum(r in pset for r in grows) / len(grows)
        f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        return {"f1": 100.0 * f1, "precision": 100.0 * precision, "recall": 100.0 * recall}
    except Exception:  # noqa: BLE001 - the reference maps every failure to 0 as well
        return dict(_ZERO)


# -- loader ----------------------------------------------------------------------------------------

def _locate(path, split: str) -> tuple[Path, Path]:
    """(split file, task folder) from a split file, the html_to_tsv folder or its parent."""
    p = Path(path)
    if p.is_file():
        return p, p.parent
    for folder in (p / TASK_DIR, p / "data" / TASK_DIR, p):
        f = folder / f"{TASK_DIR}_{split}.json"
        if f.is_file():
            return f, folder
    raise FileNotFoundError(f"no {TASK_DIR}_{split}.json under {p} (looked in {p}, {p / TASK_DIR}, {p / 'data' / TASK_DIR})")


def _read_prompt(folder: Path) -> tuple[str, str]:
    for f in (folder / "prompts.yaml", folder.parent / "prompts.yaml"):
        if f.is_file():
            import yaml

            with open(f, encoding="utf-8") as fh:
                data = yaml.safe_load(fh)
            if not isinstance(data, dict) or not isinstance(data.get("USER_PROMPT"), str):
                raise ValueError(f"{f}: expected a mapping with a USER_PROMPT string")
            return data["USER_PROMPT"], f.name  # the file name: rows must not carry the machine's paths
    return DEFAULT_USER_PROMPT, "builtin"


def _resolve_html(html_path: str, folder: Path) -> Path:
    rel = Path(html_path)
    cands = [rel] if rel.is_absolute() else [folder / rel] + [a / rel for a in folder.parents][:4] + [Path.cwd() / rel]
    cands += [folder / "webpage" / rel.name, folder / rel.name]
    for c in cands:
        if c.is_file():
            return c
    raise FileNotFoundError(f"html page {html_path!r} not found; tried {[str(c) for c in cands]}")


def _row_to_sample(d: dict, template: str, html: str, source: str, prompt_source: str) -> Sample:
    missing = [k for k in ("task_id", "task_topic", "task_description", "gt", "tsv_header") if k not in d]
    if missing:
        raise ValueError(f"{source}: row {d.get('task_id', '?')} lacks {missing}")
    group = str(d.get("output_length_group", ""))
    fields = dict(html_str=html, task_topic=d["task_topic"], task_description=d["task_description"],
                  filtering_instruction=d.get("filtering_instruction") or "", tsv_header=d["tsv_header"])
    meta = {k: d.get(k) for k in ("output_length_group", "task_id", "website_id", "html_path", "task_topic")}
    meta.update(source=source, prompt_template=prompt_source)
    if group in MAX_NEW_TOKENS:
        meta["max_new_tokens"] = MAX_NEW_TOKENS[group]
    return Sample(id=f"longproc-{d['task_id']}", prompt=template.format(**fields), gold=d["gt"], meta=meta)


def _load_hub(hub_id: str, split: str, n: int | None) -> list[Sample]:
    import datasets

    try:
        ds = datasets.load_dataset(hub_id, split=split)
    except Exception as e:  # noqa: BLE001
        raise RuntimeError(
            f"could not load {hub_id!r} split {split!r} from the Hugging Face hub ({type(e).__name__}: {e}). "
            "Offline? Clone princeton-pli/LongProc elsewhere and pass its data/ folder as the path."
        ) from e
    out = []
    for i, row in enumerate(ds):
        if n is not None and len(out) >= n:
            break
        row = dict(row)
        if isinstance(row.get("input_prompt"), str):  # already rendered (HELMET-style copies)
            out.append(Sample(id=f"longproc-{row.get('task_id', i)}", prompt=row["input_prompt"],
                              gold=row.get("reference_output", row.get("gt")), meta={"source": f"hub:{hub_id}"}))
            continue
        html = row.get("html_str") or row.get("html")
        if not isinstance(html, str):
            raise ValueError(f"hub:{hub_id} rows carry neither input_prompt nor html content; use a local copy")
        out.append(_row_to_sample(row, DEFAULT_USER_PROMPT, html, f"hub:{hub_id}", "builtin"))
    return out


def load_longproc(path, *, split: str = "8k", n: int | None = None) -> list[Sample]:
    """HTML-to-TSV samples from a local copy of the LongProc data (or a hub id when online)."""
    if split not in MAX_NEW_TOKENS:
        raise ValueError(f"split must be one of {sorted(MAX_NEW_TOKENS)}, got {split!r}")
    if not Path(path).exists() and _HUB_ID.match(str(path)):
        return _load_hub(str(path), split, n)
    split_file, folder = _locate(path, split)
    with open(split_file, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"{split_file}: expected a JSON list of tasks")
    template, prompt_source = _read_prompt(folder)
    out = []
    for d in data:
        if n is not None and len(out) >= n:
            break
        html = _resolve_html(d["html_path"], folder).read_text(encoding="utf-8")
        out.append(_row_to_sample(d, template, html, split_file.name, prompt_source))
    return out


class LongProcHtmlToTsvTask(Task):
    name = "longproc_html_to_tsv"
    max_new_tokens = MAX_NEW_TOKENS["8k"]
    primary_metric = "f1"

    def load(self, path=None, *, n=None, tokens=None, seed=0, tokenizer=None, split: str = "8k", **kw) -> list[Sample]:
        """path: the LongProc data folder / split file / hub id, or the records JSONL that `python -m shadowkv_lab
        data longproc_html_to_tsv` wrote. None -> the tiny bundled fixture (with a
        warning: it is for tests and smoke runs, not results). tokens and seed are not used (fixed data)."""
        if kw:
            raise TypeError(f"unknown options {sorted(kw)}; longproc_html_to_tsv takes split=0.5k|2k|8k")
        if path is None:
            warnings.warn("longproc_html_to_tsv: no path given, loading the tiny bundled fixture (not the benchmark)",
                          stacklevel=2)
            path = FIXTURE
        if looks_like_records(path):  # each carries its cap in meta["max_new_tokens"] and its length, as written
            return self.read_records(path, n)
        samples = load_longproc(path, split=split, n=n)
        if tokenizer is not None:
            annotate_lengths(samples, tokenizer)
        return samples

    def score(self, prediction: str, gold) -> dict[str, float]:
        return score(prediction, gold if isinstance(gold, str) else "")

"""Notebooks: committed without outputs, papermill-parameterised, and every one executes end to end on a tiny
random model (tiny-qwen2, short prompts, n=1, 4 new tokens) against one shared results store."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
EXPECTED = ["00_quickstart", "01_context_intensive_vs_easy", "02_key_compression", "03_landmark_precision", "04_chunk_size",
            "05_residual_landmarks", "06_memory_budget", "07_error_attribution", "08_decode_speed"]
COMMON = ("model", "profile", "results_dir", "figures_dir", "n", "tokens", "max_new_tokens", "seed")
# Tiny tokenizer (byte-level, vocab 384) needs more tokens than a real one for the same text: MultiNeedle's 11
# needles and questions alone are ~1.6k tiny tokens.
TINY_TOKENS = {"01_context_intensive_vs_easy": 3000}

sys.path.insert(0, str(ROOT / "scripts"))
import strip_notebooks  # noqa: E402


def _load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_all_notebooks_present():
    assert [p.stem for p in NOTEBOOKS] == EXPECTED


def _committed(path):
    """The notebook as git would commit it: the index blob (after the clean filter) in a checkout, else the file.
    A notebook saved with outputs in JupyterLab but not staged is not what CI sees."""
    r = subprocess.run(["git", "show", f":{path.relative_to(ROOT).as_posix()}"], cwd=ROOT, capture_output=True, text=True)
    return json.loads(r.stdout) if r.returncode == 0 else _load(path)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_has_no_outputs(path):
    nb = _committed(path)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name}: run scripts/strip_notebooks.py"
    assert strip_notebooks.is_stripped(nb), f"{path.name}: run metadata left; run scripts/strip_notebooks.py"
    # nbformat 4.5 requires a unique id per cell (newer nbformat versions refuse a notebook without them)
    ids = [cell.get("id") for cell in nb["cells"]]
    assert all(ids) and len(set(ids)) == len(ids), f"{path.name}: cells without a unique id"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_parameters_cell(path):
    nb = _load(path)
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: exactly one cell tagged 'parameters'"
    src = "".join(tagged[0]["source"])
    names = {line.split("=")[0].strip() for line in src.splitlines() if "=" in line and not line.lstrip().startswith("#")}
    assert set(COMMON) <= names, f"{path.name}: parameters lack {set(COMMON) - names}"
    for line in src.splitlines():  # papermill's parser skips (and warns about) lines with two '='
        assert line.lstrip().startswith("#") or line.count("=") <= 1, f"{path.name}: {line!r}"
    ns: dict = {}
    exec(src, ns)  # the defaults are plain literals papermill can override
    assert ns["model"] == "qwen2.5-coder-0.5b" and ns["tokens"] <= 4096 and ns["n"] <= 4
    # opened in JupyterLab, a notebook reuses run_all.sh's quick store and writes to the quick figures folder
    assert (ns["profile"], ns["results_dir"], ns["figures_dir"]) == ("quick", "outputs/results/quick", "figures/quick")


def test_notebooks_only_call_the_package():
    """No algorithm in a notebook: no torch maths, no cache internals, no model surgery."""
    banned = ("torch.", "import torch", "SparseLayer", "linalg", "softmax", "def ")
    for path in NOTEBOOKS:
        code = "\n".join("".join(c["source"]) for c in _load(path)["cells"] if c["cell_type"] == "code")
        for b in banned:
            assert b not in code, f"{path.name} contains {b!r}"


def test_strip_removes_outputs(tmp_path):
    nb = _load(NOTEBOOKS[0])
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            c["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hi"}]
            c["execution_count"] = 3
            c["metadata"]["papermill"] = {"duration": 1.0}
    nb["metadata"]["papermill"] = {"parameters": {}}
    p = tmp_path / "x.ipynb"
    p.write_text(json.dumps(nb))
    assert strip_notebooks.main(["--check", str(p)]) == 1
    assert strip_notebooks.main([str(p)]) == 0
    out = _load(p)
    assert strip_notebooks.is_stripped(out) and strip_notebooks.main(["--check", str(p)]) == 0
    tags = [c["metadata"].get("tags") for c in out["cells"] if c["metadata"].get("tags")]
    assert tags == [["parameters"]]  # tags survive


def test_clean_filter_strips_what_git_stores():
    """Saving a notebook with outputs never reaches a commit: .gitattributes routes notebooks through the filter."""
    import io

    assert "*.ipynb filter=strip-notebooks" in (ROOT / ".gitattributes").read_text()
    assert "strip-notebooks" in (ROOT / "scripts" / "ensure_env.sh").read_text()
    nb = _load(NOTEBOOKS[0])
    nb["cells"][1]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "hi"}]
    nb["cells"][1]["execution_count"] = 7
    out = io.StringIO()
    assert strip_notebooks.filter_stream(io.StringIO(json.dumps(nb)), out) == 0
    assert strip_notebooks.is_stripped(json.loads(out.getvalue())) and json.loads(out.getvalue()) == strip_notebooks.strip(nb)
    out = io.StringIO()
    strip_notebooks.filter_stream(io.StringIO("not json"), out)
    assert out.getvalue() == "not json"


@pytest.fixture(scope="module")
def tiny_run_dir(tmp_path_factory):
    pytest.importorskip("papermill")
    pytest.importorskip("shadowkv_lab.runner")
    pytest.importorskip("shadowkv_lab.tasks")
    return tmp_path_factory.mktemp("notebooks")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes_on_tiny_model(path, tiny_run_dir):
    import papermill as pm

    params = {"model": "tiny-qwen2", "profile": "smoke-test", "results_dir": str(tiny_run_dir / "results"), "figures_dir": str(tiny_run_dir / "figures"),
              "n": 1, "tokens": TINY_TOKENS.get(path.stem, 1500), "max_new_tokens": 4}
    out = tiny_run_dir / path.name
    pm.execute_notebook(str(path), str(out), parameters=params, kernel_name="python3", cwd=str(ROOT), progress_bar=False)
    nb = _load(out)
    errors = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"] if o["output_type"] == "error"]
    assert not errors
    figs = list((tiny_run_dir / "figures").glob(f"{path.stem[:2]}_*.pdf"))
    assert figs, f"{path.name} saved no figure"
    assert all(f.with_suffix(".png").is_file() for f in figs)
    assert all(b"profile=smoke-test; model=tiny-qwen2; n=1" in f.read_bytes() for f in figs), "figures not stamped"


def test_run_all_rejects_bad_arguments():
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    cases = [(["--profile", "huge"], ["huge", "quick", "full"]), (["--only", "99_nope"], ["99_nope", "00_quickstart"]),
             (["--frobnicate"], ["--frobnicate", "--profile"]), (["--only"], ["--only needs a value"]),
             (["--only", "0"], ["ambiguous"]), (["--n", "0"], ["positive integer"]), (["--tokens", "2k"], ["positive integer"]),
             (["--set", "difficulty=calibrated"], ["TASK.KEY=VALUE"]),
             (["--data-dir", "/nonexistent/data"], ["--data-dir '/nonexistent/data' is not a folder"]),
             (["--data-dir", str(ROOT), "--set", "text2json.n_gold=3"], ["--set does not apply with --data-dir"]),
             (["--store"], ["--store needs a value"])]
    for args, expected in cases:
        r = subprocess.run(["bash", str(ROOT / "run_all.sh"), *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        for e in expected:
            assert e in r.stderr, (args, r.stderr)
    r = subprocess.run(["bash", str(ROOT / "run_all.sh"), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--profile" in r.stdout


def test_run_all_dry_run_writes_profile_parameters(tmp_path):
    """--model / --n / --tokens / --set reach every notebook; the full profile uses the calibrated Text2JSON and
    its own figures folder."""
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    import yaml

    def dry(*args):
        r = subprocess.run(["bash", str(ROOT / "run_all.sh"), "--dry-run", "--out", str(tmp_path), *args], capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        return r

    dry("--profile", "full", "--only", "01")
    p = yaml.safe_load((tmp_path / "params" / "full" / "01_context_intensive_vs_easy.yaml").read_text())
    assert p["task_kw"] == {"text2json": {"difficulty": "calibrated"}} and p["profile"] == "full"
    assert p["figures_dir"] == str(tmp_path / "figures" / "full") and p["results_dir"] == str(tmp_path / "results" / "full")
    dry("--only", "02", "--model", "qwen2.5-coder-1.5b", "--n", "6", "--tokens", "4096", "--set", "text2json.difficulty=easy",
        "--set", "text2json.n_gold=3")
    p = yaml.safe_load((tmp_path / "params" / "quick" / "02_key_compression.yaml").read_text())
    assert (p["model"], p["n"], p["tokens"], p["profile"]) == ("qwen2.5-coder-1.5b", 6, 4096, "quick")
    assert p["task_kw"] == {"text2json": {"difficulty": "easy", "n_gold": 3}}  # replaces the quick knobs of that task
    assert p["figures_dir"].endswith("figures/quick")
    # the study's data files and the reproduction's store: the full profile reads samples from the files, at
    # ShadowKV's published rank, and writes no generator knobs that would not apply
    data = tmp_path / "data"
    data.mkdir()
    r = subprocess.run(["bash", str(ROOT / "run_all.sh"), "--dry-run", "--out", str(tmp_path), "--profile", "full",
                        "--only", "06", "--data-dir", str(data), "--store", str(tmp_path / "repro")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "t2j_16k.jsonl missing" in r.stderr and "06_memory_budget: its grid" in r.stderr
    p = yaml.safe_load((tmp_path / "params" / "full" / "06_memory_budget.yaml").read_text())
    assert p["data_dir"] == str(data) and p["results_dir"] == str(tmp_path / "repro") and p["shadowkv_rank"] == 160
    assert "task_kw" not in p  # the files were written with their own knobs



def test_run_all_removes_its_own_prefill_store_and_keeps_the_callers(tmp_path):
    """The quick profile's shared prefills live in OUT/prefills while it runs and are removed at its end; a store the
    caller named in SHADOWKV_LAB_PREFILLS is the caller's and stays."""
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    import os

    own, theirs = tmp_path / "out" / "prefills", tmp_path / "theirs"
    for d in (own, theirs):
        d.mkdir(parents=True)
        (d / "entry.pt").write_bytes(b"x")
    env = {k: v for k, v in os.environ.items() if k != "SHADOWKV_LAB_PREFILLS"}
    run = ["bash", str(ROOT / "run_all.sh"), "--only", "08", "--out", str(tmp_path / "out")]
    r = subprocess.run(run, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not own.exists()
    r = subprocess.run(run, capture_output=True, text=True, timeout=600, env={**env, "SHADOWKV_LAB_PREFILLS": str(theirs)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert (theirs / "entry.pt").exists()

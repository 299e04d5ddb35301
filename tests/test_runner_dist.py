"""Runner in other processes: SIGKILL mid-run then resume, and 2-rank torchrun (gloo) == one process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from shadowkv_lab.results import load, shards

TESTS = Path(__file__).parent
N_SAMPLES, TOKENS, METHODS = 5, 600, ["full", "yakv", "lm_bf16_c1"]
SCRIPT = f"""
import sys, time, torch
sys.path.insert(0, {str(TESTS)!r})
torch.set_num_threads(1)
from test_runner import FakeTask
from shadowkv_lab.testing import tiny_model
import shadowkv_lab.runner as runner
out, pause = sys.argv[1], float(sys.argv[2])
if pause:  # slow every wave down so that the test can kill the run between two shards
    real = runner.decode
    def decode(*a, **k):
        time.sleep(pause)
        return real(*a, **k)
    runner.decode = decode
model, tok = tiny_model("qwen2")
task = FakeTask()
runner.run(model, tok, [(task, task.load(n={N_SAMPLES}, tokens={TOKENS}, seed=0))], {METHODS!r}, out,
           model_name="tiny", batch_size=2, progress=False)
"""


def _script(tmp_path) -> Path:
    p = tmp_path / "run_grid.py"
    p.write_text(SCRIPT)
    return p


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(Path(__import__("shadowkv_lab").__file__).parents[1]), env.get("PYTHONPATH")] if p)
    return env


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted single-process run, in this process, on the same thread count as the subprocesses."""
    sys.path.insert(0, str(TESTS))
    from test_runner import FakeTask

    from shadowkv_lab.runner import run
    from shadowkv_lab.testing import tiny_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, tok = tiny_model("qwen2")
        task = FakeTask()
        df = run(model, tok, [(task, task.load(n=N_SAMPLES, tokens=TOKENS, seed=0))], METHODS, tmp_path_factory.mktemp("ref"),
                 model_name="tiny", batch_size=4, progress=False)
    finally:
        torch.set_num_threads(threads)
    assert len(df) == N_SAMPLES * len(METHODS)
    return df


def _same(df, ref):
    cols = ["sample_id", "method", "token_ids", "prediction", "score", "finish_reason", "new_tokens"]
    a = df[cols].sort_values(["sample_id", "method"]).reset_index(drop=True)
    b = ref[cols].sort_values(["sample_id", "method"]).reset_index(drop=True)
    assert a.equals(b)


def test_sigkill_then_resume(tmp_path, reference):
    out = tmp_path / "res"
    proc = subprocess.Popen([sys.executable, str(_script(tmp_path)), str(out), "0.4"], env=_env())
    deadline = time.time() + 120
    try:
        while not shards(out):
            assert proc.poll() is None, "the run ended before writing a shard"
            assert time.time() < deadline
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    partial = load(out)
    assert 0 < len(partial) < N_SAMPLES * len(METHODS)
    subprocess.run([sys.executable, str(_script(tmp_path)), str(out), "0"], env=_env(), check=True)
    df = load(out)
    assert len(df) == N_SAMPLES * len(METHODS)
    assert not df.duplicated(["model", "task", "sample_id", "config_hash"]).any()
    _same(df, reference)


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun/gloo on loopback")
def test_two_ranks_gloo_equal_one_process(tmp_path):
    """`torchrun --nproc-per-node 2 -m shadowkv_lab run ...` (gloo on CPU) stores the rows of a one-process run."""
    tasks = pytest.importorskip("shadowkv_lab.tasks")
    from shadowkv_lab.runner import run
    from shadowkv_lab.testing import tiny_model

    task, n, tokens, methods = "ruler_niah_single", 5, 700, ["full", "yakv", "shadowkv_fullkeys"]
    out = tmp_path / "res"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "shadowkv_lab", "run",
           "--model", "tiny-qwen2", "--task", task, "--num-samples", str(n), "--tokens", str(tokens), "--methods", ",".join(methods),
           "--max-new-tokens", "6", "--batch-size", "4", "--out", str(out)]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rank 0 of 2: ran" in proc.stdout  # only rank 0 prints the summary
    df = load(out)
    assert len(df) == n * len(methods)
    assert not df.duplicated(["sample_id", "config_hash"]).any()
    assert set(df.process_rank) == {0, 1}
    assert {p.name.split("-")[1] for p in shards(out)} == {"r000", "r001"}
    # sharded by sample: every sample's methods all ran on one rank (its prefill was shared)
    assert df.groupby("sample_id").process_rank.nunique().eq(1).all()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model, tok = tiny_model("qwen2")
        ref = run(model, tok, [task], methods, tmp_path / "ref", model_name="tiny-qwen2", n=n, tokens=tokens,
                  max_new_tokens=6, batch_size=8, progress=False)
    finally:
        torch.set_num_threads(threads)
    _same(df, ref)

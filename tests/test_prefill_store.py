"""The prefill store: a stored prefill is reused only where recomputing it gives the same bits, and a grid run with it
gives exactly the rows of one without it."""

from __future__ import annotations

import json

import pytest
import torch

from shadowkv_lab import generation, prefill_store
from shadowkv_lab.generation import prefill
from shadowkv_lab.prefill_store import PrefillStore
from shadowkv_lab.testing import tiny_model

FIELDS = ("k_pre", "k_post", "v")


def _ids(seed: int, n: int = 80) -> torch.Tensor:
    return torch.randint(3, 384, (n,), generator=torch.Generator().manual_seed(seed))


def _same(a, b) -> bool:
    return (torch.equal(a.input_ids, b.input_ids) and torch.equal(a.first_logits, b.first_logits)
            and all(torch.equal(x, y) for f in FIELDS for x, y in zip(getattr(a, f), getattr(b, f))))


@pytest.fixture(scope="module")
def model():
    return tiny_model("qwen2", seed=3, dtype=torch.bfloat16)[0]


@torch.inference_mode()
def test_read_back_is_bit_identical_and_runs_no_forward(model, tmp_path, monkeypatch):
    store = PrefillStore(tmp_path / "p")
    ids = _ids(0)
    fresh = prefill(model, ids)
    saved = prefill(model, ids, store=store)
    assert _same(fresh, saved) and len(list((tmp_path / "p").iterdir())) == 1
    monkeypatch.setattr(generation, "prefill_forward", lambda *a, **k: pytest.fail("a stored prompt ran a forward"))
    again = prefill(model, ids, store=store)
    assert _same(fresh, again) and again.prefill_s == saved.prefill_s  # the original run's time, read back
    assert again.input_ids.device.type == "cpu" and not list((tmp_path / "p").glob("*.tmp*"))


@torch.inference_mode()
def test_key_changes_with_prompt_weights_code_and_threads(model, monkeypatch):
    ids = _ids(1)
    key = prefill_store.entry_key(model, ids)
    assert prefill_store.entry_key(model, ids.clone()) == key
    assert prefill_store.entry_key(model, _ids(2)) != key
    assert prefill_store.entry_key(model, ids[:-1]) != key
    other = tiny_model("qwen2", seed=4, dtype=torch.bfloat16)[0]  # same shapes, other weights
    assert prefill_store.entry_key(other, ids) != key
    monkeypatch.setattr(prefill_store, "code_digest", lambda: "an edited package")
    assert prefill_store.entry_key(model, ids) != key
    monkeypatch.undo()
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(threads + 1)
        assert prefill_store.entry_key(model, ids) != key
    finally:
        torch.set_num_threads(threads)


def test_model_digest_sees_one_changed_weight(model):
    clone = tiny_model("qwen2", seed=3, dtype=torch.bfloat16)[0]
    assert prefill_store.model_digest(clone) == prefill_store.model_digest(model)
    with torch.no_grad():
        p = next(clone.parameters())
        p.view(-1)[0] = p.view(-1)[0] + 1
    clone.__dict__.pop("_skv_digest")
    assert prefill_store.model_digest(clone) != prefill_store.model_digest(model)


@torch.inference_mode()
def test_bad_entries_and_roots_raise_naming_them(model, tmp_path):
    store = PrefillStore(tmp_path / "p")
    ids = _ids(5)
    prefill(model, ids, store=store)
    f = store.path(model, ids)
    f.write_bytes(b"not a torch file")
    with pytest.raises(RuntimeError, match=f.name):
        prefill(model, ids, store=store)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="file"):
        PrefillStore(tmp_path / "file")
    with pytest.raises(ValueError, match="folder"):
        PrefillStore("")


def test_grid_with_the_store_gives_the_rows_without_it(tmp_path, monkeypatch):
    """Two runs share one prefill store (the second reads every prompt back, no forward): both give the tokens,
    predictions and scores of a run without the store; the notebooks' runs find it in SHADOWKV_LAB_PREFILLS."""
    from test_runner import FakeTask

    from shadowkv_lab import runner, workbook
    from shadowkv_lab.runner import run

    model, tok = tiny_model("qwen2")
    task = FakeTask()
    samples = task.load(n=2, tokens=300, seed=1)
    methods = ["full", "shadowkv_fullkeys"]
    cols = ["sample_id", "method", "token_ids", "prediction", "score"]

    def rows(out, **kw):
        df = run(model, tok, [(task, samples)], methods, tmp_path / out, model_name="tiny", progress=False, **kw)
        return df.sort_values(["sample_id", "method"])[cols].reset_index(drop=True)

    plain = rows("plain")
    first = rows("first", prefills=tmp_path / "prefills")
    assert len(list((tmp_path / "prefills").iterdir())) == len(samples)
    monkeypatch.setattr(generation, "prefill_forward", lambda *a, **k: pytest.fail("a stored prompt ran a forward"))
    second = rows("second", prefills=PrefillStore(tmp_path / "prefills"))
    assert plain.equals(first) and plain.equals(second)
    assert all(json.loads(t) for t in plain.token_ids)

    seen = []
    monkeypatch.setattr(runner, "run", lambda *a, **k: seen.append(k["prefills"]) or plain)
    monkeypatch.setenv(prefill_store.ENV, str(tmp_path / "prefills"))
    workbook.run(model, tok, [(task, samples)], methods, tmp_path / "wb", model_name="tiny", n=2, tokens=300)
    assert isinstance(seen[0], PrefillStore) and seen[0].root == tmp_path / "prefills"
    monkeypatch.delenv(prefill_store.ENV)
    workbook.run(model, tok, [(task, samples)], methods, tmp_path / "wb", model_name="tiny", n=2, tokens=300)
    assert seen[1] is None

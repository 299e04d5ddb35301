"""benchmarks/count_launches.py: the kernels one decode step launches per layer and method group (Triton interpreter),
and the launches the step no longer makes: row slots materialised for every gather, the query padded for scoring,
chunk offsets rebuilt, HIGGS keys and values each taking the union of the same positions."""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from count_launches import main  # noqa: E402


@pytest.fixture(scope="module")
def counts(tmp_path_factory):
    if os.environ["TRITON_INTERPRET"] != "1":
        pytest.skip("counts run on the Triton interpreter")
    out = tmp_path_factory.mktemp("launches") / "launches.json"
    main(["--methods", "full,shadowkv,yakv", "--rows", "2", "--layers", "28", "--out", str(out)])
    return json.loads(out.read_text())


def test_every_group_counts_its_kernels_and_the_step_totals_them(counts):
    m = counts["methods"]
    assert m["full"]["groups"] == ["ExactGroup"] and m["shadowkv"]["groups"] == ["SparseGroup"]
    assert m["full"]["triton"] == {"_attn_part": 2.0, "_attn_merge": 1.0}  # prompt and generated segments, merged
    for r in m.values():
        assert r["per_layer"] == r["aten_per_layer"] + r["triton_per_layer"]
    assert counts["step_launches"] == pytest.approx(sum(r["per_layer"] for r in m.values()) * 28
                                                    + sum(r["per_step"] for r in m.values()))


def test_the_sparse_step_launches_no_bookkeeping_kernels(counts):
    sk = counts["methods"]["shadowkv"]
    # low-rank keys rebuilt, values gathered, landmarks scored in two passes, top-k keys in one kernel
    assert sk["triton"]["_lowrank_rows"] == 1 and sk["triton"]["_gather_rows"] == 1 and sk["triton"]["_rank_keys"] == 1
    # no arange (slots, chunk offsets), no padded query (zeros + copy), no dtype round trip
    assert "arange" not in sk["aten"] and "zeros" not in sk["aten"] and "to" not in sk["aten"], sk["aten"]
    assert sk["aten_per_layer"] <= 6, sk["aten"]


def test_higgs_keys_and_values_share_one_union_of_positions(counts):
    y = counts["methods"]["yakv"]
    assert y["triton"]["_higgs_rows"] == 2  # keys and values dequantized
    assert y["aten"]["sort"] == 1, y["aten"]  # one union (a sort of the heads' positions), not one each


def test_bad_arguments_are_named_before_anything_runs(tmp_path, capsys):
    for argv, named in ((["--methods", "full,nosuch"], "unknown method 'nosuch'"), (["--rows", "0"], "--rows 0")):
        with pytest.raises(SystemExit):
            main([*argv, "--out", str(tmp_path / "x.json")])
        assert named in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()

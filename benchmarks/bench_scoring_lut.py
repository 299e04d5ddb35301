"""Landmark scoring speed: 2-bit HIGGS through lookup tables vs the reference-exact HIGGS scorer vs bf16 landmarks.

    python benchmarks/bench_scoring_lut.py [--out benchmarks/results/scoring_lut_h200.json] [--sweep]   # CUDA
    python benchmarks/bench_scoring_lut.py --smoke                                   # CPU, TRITON_INTERPRET=1, tiny

Shapes: Llama-3.1-8B (8 KV heads, G = 4 query heads per KV head, head dim 128), B = 32 rows, M = 131,072 landmarks
per row and KV head (chunk 1 at 128k tokens): BH = 256 rows. Softmax-max rule. Methods:
  lut       kernels/scoring_lut.py: higgs_lut (the queries' tables, built inside the timed call) then
            landmark_scores_lut (fp32 probabilities); reads 32 code bytes + a 4-byte scale per landmark
  higgs     kernels/scoring.py landmark_scores on HIGGS Landmarks (EDEN4-256): dequantizes every landmark, bit for
            bit SparseLayer.select (bf16 landmarks and probabilities); the same 36 bytes per landmark
  bf16      landmark_scores on bf16 landmarks (256 bytes per landmark)
Each call is captured in a CUDA graph and replayed with the next query of bench_decode_step's AR(1) query stream
(bench_decode_step.timed_steps: warm-up, then the median of --n-time replays, CUDA events).
Effective GB/s = the landmark bytes (codes + scales, or bf16 landmarks) read once / time. lut_table_only times
higgs_lut alone (its share of the lut call).
Data: keys = three massive channels + low rank + noise (bf16), quantized with HiggsQuantizer (EDEN4-256, group 128);
--recall-rows rows are quantized per massive size and tiled to BH rows for the timing. Recall: the LUT top-4096 vs the
reference-exact top-4096 (landmark_scores, bf16 probabilities, ties to the lowest index), per massive-channel size
(--massive), next to the recall of dequantize-then-dot in fp32 against the same reference (the reference's own
rounding: the LUT top-k equals the fp32 one).
Writes the JSON (--out) and <out stem>.rows.csv (results.BENCH_COLUMNS), then prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

if "--smoke" in sys.argv:
    os.environ.setdefault("TRITON_INTERPRET", "1")  # before triton is imported

import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_decode_step import QueryStream, timed_steps  # noqa: E402
from to_rows import stamp  # noqa: E402
from shadowkv_lab.kernels.scoring import FMT_HIGGS, FMT_NATIVE, Landmarks, landmark_scores  # noqa: E402
from shadowkv_lab.kernels.scoring_lut import LUT_TILE, higgs_lut, landmark_scores_lut  # noqa: E402
from shadowkv_lab.quant import HiggsQuantizer, load_grid  # noqa: E402
from shadowkv_lab.results import bench_row, write_bench_rows  # noqa: E402
from shadowkv_lab.selection import topk_indices  # noqa: E402

H, G, D, P = 8, 4, 128, 4
SCALING = D ** -0.5


def keys(R, M, massive, gen, dev):
    """(R, M, D) bf16 keys: three massive low-frequency channels of size `massive`, rank-8 structure, noise."""
    mv = torch.zeros(D, device=dev)
    mv[[D // 2 - 1, D - 1, D // 2 - 3]] = torch.tensor([300.0, -250.0, 120.0], device=dev) * (massive / 300)
    k = mv + torch.randn(R, M, 8, device=dev, generator=gen) @ torch.randn(8, D, device=dev, generator=gen)
    return (k + torch.randn(R, M, D, device=dev, generator=gen)).to(torch.bfloat16), mv


def quantize(k, chunk=1 << 20):
    """(R, M, D) keys -> codes (R, M, D // P) uint8, scales (R, M) fp32, fp32 dequantized landmarks (R, M, D)."""
    R, M, _ = k.shape
    qz = HiggsQuantizer(P, 256, D)
    flat = k.reshape(-1, D)
    cs, ss, ds = [], [], []
    for i in range(0, flat.shape[0], chunk):
        qt = qz.quantize(flat[i:i + chunk].float())
        cs.append(qt.rows["codes"])
        ss.append(qt.rows["scales"])
        ds.append(qz.dequantize(qt))
    return (torch.cat(cs).view(R, M, D // P), torch.cat(ss).view(R, M).float(), torch.cat(ds).view(R, M, D))


def recall(a, b, k):
    """Mean over rows of |top-k(a) & top-k(b)| / k (top-k with ties to the lowest index)."""
    ta, tb = topk_indices(a, k), topk_indices(b, k)
    hit = (ta.unsqueeze(2) == tb.unsqueeze(1)).any(2).float()  # (R, k)
    return float(hit.mean())


def recall_rows(R, M, k, massive, seed, dev):
    """Recall of the LUT top-k vs the reference-exact top-k on R rows of real HIGGS codes; also returns the data."""
    gen = torch.Generator(device=dev).manual_seed(seed)
    k_, mv = keys(R, M, massive, gen, dev)
    codes, scales, deq = quantize(k_)
    q = (mv / 8 + 2 * torch.randn(R, G, D, device=dev, generator=gen)).to(torch.bfloat16)
    grid = load_grid(P, 256, dev)
    lut = landmark_scores_lut(codes, scales, higgs_lut(q, grid), SCALING)
    ref = landmark_scores(Landmarks(FMT_HIGGS, codes, scales, grid, P), q, SCALING, bf16_probs=True)
    fp32 = torch.softmax(torch.matmul(q.float(), deq.transpose(1, 2)) * SCALING, -1).max(1).values
    res = dict(massive=massive, rows=R, k=k, recall_lut=recall(lut, ref, k), recall_fp32_dequant=recall(fp32, ref, k),
               lut_vs_fp32_dequant=recall(lut, fp32, k))
    return res, (codes, scales, deq)


def tile(t, reps):
    return t.repeat(reps, *([1] * (t.dim() - 1)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true", help="tiny shapes on CPU under TRITON_INTERPRET=1")
    ap.add_argument("--out", default=None, help="JSON path (default benchmarks/results/scoring_lut_h200.json; "
                                                "--smoke: the temp folder)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--landmarks", type=int, default=131072)
    ap.add_argument("--topk", type=int, default=4096)
    ap.add_argument("--recall-rows", type=int, default=8, help="rows quantized per massive size (tiled to B * 8)")
    ap.add_argument("--massive", type=float, nargs="+", default=[300.0, 30.0, 0.0],
                    help="massive-channel sizes for the recall; the first one's codes are timed")
    ap.add_argument("--n-warm", type=int, default=3)
    ap.add_argument("--n-time", type=int, default=20)
    ap.add_argument("--sweep", action="store_true", help="also time the LUT scorer's tiles (block_m x warps x store)")
    a = ap.parse_args(argv)
    cuda = torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") != "1"
    if not cuda and not a.smoke:
        ap.error("needs CUDA (or --smoke: CPU under TRITON_INTERPRET=1)")
    if a.smoke:
        a.batch, a.landmarks, a.topk, a.recall_rows, a.n_warm, a.n_time = 1, 2048, 64, 4, 1, 2
    out = a.out or (os.path.join(tempfile.gettempdir(), "scoring_lut_smoke.json") if a.smoke else
                    os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "scoring_lut_h200.json"))
    dev = torch.device("cuda" if cuda else "cpu")
    device_name = torch.cuda.get_device_name() if cuda else "cpu (TRITON_INTERPRET=1)"
    BH, M = a.batch * H, a.landmarks
    if BH % a.recall_rows:
        ap.error(f"--recall-rows must divide B * {H} = {BH}")

    recalls, timing_data = [], None
    for i, mv in enumerate(a.massive):
        res, data = recall_rows(a.recall_rows, M, a.topk, mv, seed=i, dev=dev)
        recalls.append(res)
        print(f"recall@{a.topk} massive {mv:g}: LUT {res['recall_lut']:.4f}, fp32 dequantize-then-dot "
              f"{res['recall_fp32_dequant']:.4f}, LUT vs fp32 {res['lut_vs_fp32_dequant']:.4f}", flush=True)
        if i == 0:
            timing_data = data
        del data
    codes_r, scales_r, deq_r = timing_data
    reps = BH // a.recall_rows
    codes, scales = tile(codes_r, reps).contiguous(), tile(scales_r, reps).contiguous()
    native = tile(deq_r.to(torch.bfloat16), reps).contiguous()
    del deq_r, timing_data
    qs = QueryStream(BH, 0.9)  # every timed call (graph replay) scores the next query of an AR(1) stream
    q = qs.next()
    grid = load_grid(P, 256, dev)
    lm_h = Landmarks(FMT_HIGGS, codes, scales, grid, P)
    lm_n = Landmarks(FMT_NATIVE, native)
    higgs_bytes, bf16_bytes = codes.nbytes + scales.nbytes, native.nbytes

    def lut_call(**kw):
        return lambda: landmark_scores_lut(codes, scales, higgs_lut(q, grid), SCALING, **kw)

    methods = [("lut", f"bm{LUT_TILE[0]} w{LUT_TILE[1]} stored", lut_call(), higgs_bytes),
               ("lut_table_only", "higgs_lut", lambda: higgs_lut(q, grid), None),
               ("higgs", "reference-exact", lambda: landmark_scores(lm_h, q, SCALING, bf16_probs=True), higgs_bytes),
               ("bf16", "native", lambda: landmark_scores(lm_n, q, SCALING, bf16_probs=True), bf16_bytes)]
    if a.sweep:
        for bm in (32, 64, 128):
            for nw in (4, 8):
                for store in (True, False):
                    if (bm, nw, store) != (*LUT_TILE, True):
                        methods.append(("lut", f"bm{bm} w{nw} {'stored' if store else 'regathered'}",
                                        lut_call(block_m=bm, num_warps=nw, store_logits=store), higgs_bytes))
    rows = []
    for name, variant, fn, nbytes in methods:
        ms, _ = timed_steps(fn, q, qs, n_warm=a.n_warm, n_time=a.n_time)
        rows.append(dict(method=name, variant=variant, ms=ms, ns_per_landmark=ms * 1e6 / (BH * M),
                         bytes_per_landmark=nbytes / (BH * M) if nbytes else None,
                         gb_s=nbytes / ms / 1e6 if nbytes else None))
        print(f"  {name} {variant}: {ms:.3f} ms", flush=True)
        if cuda:
            torch.cuda.synchronize()

    res = dict(device=device_name, smoke=a.smoke, B=a.batch, kv_heads=H, G=G, D=D, M=M, BH=BH, format="higgs-4-256",
               rule="softmax_max", timing="CUDA graph replays, CUDA events, median" if cuda else "wall clock, median",
               n_time=a.n_time, topk=a.topk, lut_tile=list(LUT_TILE), scoring=rows, recall=recalls)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    st = stamp("bench_scoring_lut", device_name)
    brows = [bench_row(**st, table="scoring", method=r["method"], variant=r["variant"], context=M, batch=a.batch,
                       metric=m, value=r[k]) for r in rows
             for k, m in (("ms", "call_ms"), ("ns_per_landmark", "ns_per_landmark"), ("gb_s", "gb_s"),
                          ("bytes_per_landmark", "bytes_per_landmark")) if r[k] is not None]
    stem = out[:-5] if out.endswith(".json") else out
    write_bench_rows(brows, stem + ".rows.csv")

    print(f"\nwrote {out}")
    print(f"{device_name}: B={a.batch} x {H} KV heads, G={G}, D={D}, M={M} landmarks per row, softmax_max")
    print(f"{'method':<16}{'variant':<22}{'ms':>10}{'ns/landmark':>13}{'B/landmark':>12}{'eff. GB/s':>11}")
    for r in rows:
        nb, gbs = (f"{r[k]:.1f}" if r[k] is not None else "-" for k in ("bytes_per_landmark", "gb_s"))
        print(f"{r['method']:<16}{r['variant']:<22}{r['ms']:>10.3f}{r['ns_per_landmark']:>13.4f}{nb:>12}{gbs:>11}")
    print(f"{'massive':>8}{'recall LUT':>12}{'recall fp32 deq':>17}{'LUT vs fp32':>13}   (top-{a.topk}, vs reference-exact)")
    for r in recalls:
        print(f"{r['massive']:>8g}{r['recall_lut']:>12.4f}{r['recall_fp32_dequant']:>17.4f}{r['lut_vs_fp32_dequant']:>13.4f}")


if __name__ == "__main__":
    main()

"""Does scoring 2-bit HIGGS landmarks in the rotated domain keep the reference's selection? Real keys, any device.

    python benchmarks/scoring_recall.py --model qwen2.5-coder-1.5b --tokens 4096          # CPU, a few minutes
    python benchmarks/scoring_recall.py --task multineedle --data mn_16k.jsonl --tokens 16384   # a stored sample

The reference (SparseLayer.select) dequantizes each landmark (inverse Hadamard transform), rounds it to the model
dtype, dots it with the query in fp32 and rounds the softmax probabilities to bf16 before the max over the GQA group
and the top-k. The rotated path never inverse-transforms a landmark: with H the Sylvester Hadamard matrix (H H = D I)
and a landmark l = H (s y) / D, q . l = (s / D) (H q) . y, so it rotates the query once and scores the grid points
y = grid[code] directly (a kernel can read them through a per-query lookup table), in fp32, with no rounding of the
landmark or of the probabilities. With the landmark offset the exact q . offset term is added to the logits.

For every layer and each of the prompt's last --n-queries positions (as decode queries), chunk 1 and a 3.125% budget
over the tokens before the first query: the recall of the reference's selection, and the exact attention mass each
selection captures. Writes benchmarks/results/scoring_recall/<model>_<tokens>.csv and prints the summary.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shadowkv_lab import key_diagnostics as kd  # noqa: E402
from shadowkv_lab.attention import layer_contexts  # noqa: E402
from shadowkv_lab.cache.key_offset import fit_offset  # noqa: E402
from shadowkv_lab.generation import encode_prompt  # noqa: E402
from shadowkv_lab.models import load_model  # noqa: E402
from shadowkv_lab.quant import load_grid, make_quantizer  # noqa: E402
from shadowkv_lab.quant.hadamard import fwht  # noqa: E402
from shadowkv_lab.selection import topk_indices  # noqa: E402
from shadowkv_lab.tasks import get_task  # noqa: E402


def selections(q, k_pre, k_post, ctx, fmt: str, budget: float, centred: bool):
    """q (H, G, n, d); keys (H, P, d) with P = L + n -> (reference top-k, rotated top-k, exact probs (H, G, n, L))."""
    H, G, n, d = q.shape
    L = k_post.shape[1] - n
    k_sel = max(1, int(budget * L))
    pos = torch.arange(L, device=k_post.device).expand(H, L)
    off = torch.zeros(H, L, d)
    if centred:
        mu = fit_offset(k_pre[:, :L], "mean").to(k_pre.dtype)
        off = ctx.rope(mu.unsqueeze(1).expand(H, L, d).contiguous(), pos).float()
    qz = make_quantizer(fmt, group=d)
    qt = qz.quantize((k_post[:, :L].float() - off).reshape(H * L, d))
    # reference: dequantize, add the offset, round to the model dtype, fp32 logits, bf16 probabilities
    lm = (qz.dequantize(qt).view(H, L, d) + off).to(k_post.dtype).float()
    s_ref = torch.matmul(q.float(), lm.transpose(-1, -2).unsqueeze(1)) * ctx.scaling
    ref = topk_indices(torch.softmax(s_ref, -1).to(torch.bfloat16).max(dim=1).values, k_sel)
    # rotated: (s / D) (H q) . grid[code] + q . offset, fp32 throughout
    grid = load_grid(qz.p, qz.n)
    y = grid[qt.rows["codes"].long()].view(H, L, d)
    s = qt.rows["scales"].float().view(H, L, 1)
    qr = fwht(q.float())  # H q, once per query
    s_rot = (torch.matmul(qr, (y * s).transpose(-1, -2).unsqueeze(1)) / d
             + torch.matmul(q.float(), off.transpose(-1, -2).unsqueeze(1))) * ctx.scaling
    rot = topk_indices(torch.softmax(s_rot, -1).max(dim=1).values, k_sel)
    p_exact, _ = kd._attention(q, k_post, k_post, ctx.scaling)
    return ref, rot, p_exact[..., :L]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b")
    ap.add_argument("--tokens", type=int, default=4096, help="prompt length (generated tasks; a label with --data)")
    ap.add_argument("--task", default="text2json", choices=("text2json", "multineedle"))
    ap.add_argument("--data", default=None, help="the task's records JSONL (the first sample is used); default: "
                                                   "generate one (Text2JSON, calibrated; MultiNeedle, built-in text)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--n-queries", type=int, default=32)
    ap.add_argument("--format", default="higgs-4-256")
    ap.add_argument("--budget", type=float, default=0.03125)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "scoring_recall"))
    a = ap.parse_args(argv)
    model, tok = load_model(a.model, dtype="bf16")
    kw = {"difficulty": "calibrated"} if a.task == "text2json" and a.data is None else {}
    sample = get_task(a.task).load(a.data, n=1, tokens=a.tokens, seed=a.seed, tokenizer=tok, **kw)[0]
    cap = kd.capture_prompt(model, tok, encode_prompt(tok, sample.prompt), a.n_queries)
    rows = []
    for layer, ctx in enumerate(layer_contexts(model)):
        k_pre, k_post, q = cap.k_pre[layer], cap.k_post[layer], cap.q[layer]
        H, _, d = k_post.shape
        qg = q.view(H, -1, q.shape[1], d)
        for centred in (False, True):
            ref, rot, p = selections(qg, k_pre, k_post, ctx, a.format, a.budget, centred)
            hit = torch.zeros(p.shape[0], p.shape[2], p.shape[3], dtype=torch.bool).scatter_(-1, ref, True)
            recall = torch.gather(hit, -1, rot).float().mean().item()

            def mass(sel):
                return torch.gather(p, -1, sel.unsqueeze(1).expand(-1, p.shape[1], -1, -1)).sum(-1).mean().item()

            rows.append({"layer": layer, "centred": centred, "recall_of_reference": recall,
                         "mass_reference": mass(ref), "mass_rotated": mass(rot)})
    df = pd.DataFrame(rows).assign(model=a.model, task=a.task, sample=sample.id, prompt_tokens=int(cap.k_pre[0].shape[1]),
                                   format=a.format)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / (f"{a.model}_{a.tokens}.csv" if a.task == "text2json" and a.data is None else
                  f"{a.model}_{a.task}_{a.tokens}.csv")
    df.to_csv(path, index=False)
    print(f"{a.model}, {df.prompt_tokens.iloc[0]} tokens -> {path}")
    g = df.groupby("centred")
    print(pd.concat([g[["recall_of_reference", "mass_reference", "mass_rotated"]].mean(),
                     g["recall_of_reference"].min().rename("min_recall")], axis=1).round(4).to_string())


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()

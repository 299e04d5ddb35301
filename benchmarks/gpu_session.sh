#!/usr/bin/env bash
# One GPU session on a machine without network: assemble the carried 1.5B GGUF parts, install carried wheels,
# convert the model once, run the CUDA tests, then the Text2JSON calibration / comparison (resumable store in
# .stage/results, copied to $OUT at the end). Usage: bash benchmarks/gpu_session.sh STAGE [STAGE...]
set -uo pipefail
export PYTHONPATH="$PWD:$PWD/.pylib" SHADOWKV_LAB_CACHE="$PWD/.stage/cache" TQDM_MININTERVAL=60 HF_HUB_OFFLINE=1
# grid8/grid16 need SETTINGS (names, or "all": every setting, ~57 of them, ~14 device-minutes at 16k); checked first
for stage in "$@"; do case $stage in grid8|grid16) [ -n "${SETTINGS:-}" ] || {
  echo "$stage: set SETTINGS=name,name,... (or SETTINGS=all)" >&2; exit 2; } ;; esac; done
OUT="${OUT:-/tmp/out}"; mkdir -p "$OUT" .stage/results
sha=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
g=".stage/cache/${sha:0:16}/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
if [ ! -f "$g" ] && ls .stage/m.* >/dev/null 2>&1; then
  mkdir -p "$(dirname "$g")"; cat .stage/m.* > "$g"; rm -f .stage/m.*
  echo "$sha  $g" | sha256sum -c - || exit 3
fi
[ -d .pylib ] || pip install -q --no-deps --target .pylib .whl/*.whl
M=qwen2.5-coder-1.5b
# grid LIMIT TOKENS ARGS...: full attention on generator settings at one length, every setting (search --grid);
# resumable store .stage/results, DTYPE (bf16 default) picks the model dtype.
grid() { timeout "$1" python benchmarks/gpu_text2json.py --phase search --grid --model $M --out .stage/results --tokens "$2" \
  --batch-size 120 ${DTYPE:+--dtype $DTYPE} "${@:3}" 2>>"$OUT/log.txt"; }
for stage in "$@"; do
  case $stage in
    prep) python -m shadowkv_lab model prepare $M 2>&1 | tail -1 ;;
    gputests) python -m pytest -q -p no:cacheprovider tests/test_cache_gpu.py 2>&1 | tail -12 ;;
    zctests) TRITON_INTERPRET=0 timeout "${TEST_LIMIT:-300}" python -m pytest -q -p no:cacheprovider -x tests/test_zero_copy.py tests/test_cache_gpu.py tests/test_kernels.py tests/test_kernels_dispatch.py 2>&1 | tail -15 ;;
    search3) SETTINGS=e1_g1.0_f0.9_a0.3,e2_g1.0_f0.9_a0,e3_g1.0_f0.95_a0.3,e4_g1.5_f0.95_a0.3,e5_g1.0_f0.95_a0_x0,e6_g0.5_f0.95_a0,e7_g2.0_f0.95_a0.3,e8_g1.0_f0.9_a0.3_all,e9_g1.0_f0.95_a0.3_all
      timeout "${SEARCH_LIMIT:-560}" python benchmarks/gpu_text2json.py --phase search --model $M --out .stage/results --tokens 8192,16384 --n 20 --batch-size 180 --settings $SETTINGS 2>>"$OUT/log.txt" | tail -20 ;;
    decode) timeout "${DECODE_LIMIT:-300}" python benchmarks/bench_decode_step.py --out "$OUT/decode" 2>>"$OUT/log.txt" | tail -40 ;;
    runner32) SHADOWKV_LAB_KERNELS=0 timeout "${RUNNER_LIMIT:-560}" python benchmarks/bench_runner.py --model $M --dtype fp32 --n "${RUNNER_N:-16}" --tokens 16384 --max-new-tokens "${RUNNER_NEW:-256}" --batch-size 128 --naive-cells "${NAIVE_CELLS:-8}" --out-json "$OUT/runner_h200.json" 2>>"$OUT/log.txt" | tail -14 ;;
    kernels) OUT="$OUT" timeout "${KERNELS_LIMIT:-300}" python benchmarks/check_kernels_e2e.py --model $M --tokens 8192 --seeds "${SEEDS:-7,8}" ${HIGGS_TILE:+--higgs-tile $HIGGS_TILE} 2>>"$OUT/log.txt" ;;
    scoring) timeout "${DECODE_LIMIT:-300}" python benchmarks/bench_decode_step.py --out "$OUT/scoring" --sweep-scoring --scoring-only --sweep-alphas 0.9 2>>"$OUT/log.txt" | tail -30 ;;
    search) python benchmarks/gpu_text2json.py --phase search --model $M --out "$OUT/results" --tokens 8192,16384 --n 20 --batch-size 120 ${SETTINGS:+--settings $SETTINGS} 2>>"$OUT/log.txt" | tail -20 ;;
    grid8|grid16) t=$([ $stage = grid8 ] && echo 8192 || echo 16384)
      grid "${SEARCH_LIMIT:-540}" $t --n "${N:-20}" --seed "${SEED:-0}" $([ "$SETTINGS" = all ] || echo --settings "$SETTINGS") | tail -20 ;;
    # confirm: the TOP (2) settings of the last grid's calibration.json, N (40) samples, seeds SEEDS_T2J (0 1), 16k then 8k
    confirm) top=$(python -c "import json; r=json.load(open('.stage/results/calibration.json'))['rows']; print(','.join(x['setting'] for x in sorted(r, key=lambda x: -x['score'])[:${TOP:-2}]))")
      echo "confirm: $top"; cp .stage/results/calibration.json "$OUT/calibration_grid.json"
      for t in 16384 8192; do for sd in ${SEEDS_T2J:-0 1}; do
        grid "${SEARCH_LIMIT:-250}" $t --n "${N:-40}" --seed $sd --settings "$top" | grep -v '^chosen' | cut -c1-200
        cp .stage/results/calibration.json "$OUT/calibration_${t}_s$sd.json"
      done; done ;;
    runner) timeout "${RUNNER_LIMIT:-280}" python benchmarks/bench_runner.py --model $M --n "${RUNNER_N:-8}" --tokens 16384 --max-new-tokens "${RUNNER_NEW:-256}" --batch-size 128 --naive-cells "${NAIVE_CELLS:-8}" --out-json "$OUT/runner_h200.json" 2>>"$OUT/log.txt" | tail -12 ;;
    cal8) python benchmarks/gpu_text2json.py --phase calibrate --model $M --out .stage/results --tokens 8192 --gold-per-1k 2.5 --n 20 --batch-size 40 2>>"$OUT/log.txt" | tail -12 ;;
    cal16) python benchmarks/gpu_text2json.py --phase calibrate --model $M --out .stage/results --tokens 16384 --gold-per-1k 2.5 --n 20 --batch-size 40 2>>"$OUT/log.txt" | tail -12 ;;
    cmp*) g1k=${stage#cmp}; python benchmarks/gpu_text2json.py --phase compare --model $M --out .stage/results --tokens 8192 --gold-per-1k "$g1k" --n 8 --methods "${METHODS:-full,shadowkv_scaled,shadowkv_fullkeys,oracle,yakv}" --batch-size 40 2>>"$OUT/log.txt" | tail -14 ;;
  esac
  cp -r .stage/results "$OUT/" 2>/dev/null
done

#!/usr/bin/env bash
# One session on a GPU machine without network, for any offline model, stages in the order given:
#
#   bash benchmarks/gpu_session.sh --model NAME STAGE [STAGE...] [-- ARGS...]
#
#   parts      concatenate carried GGUF byte-parts (.stage/m.*, in name order) into the model cache, check the sha256
#              (size, sha and file name come from shadowkv_lab.models.OFFLINE_MODELS)
#   wheels     install carried wheels (.whl/*.whl) into .pylib, without network or dependencies
#   prep       python -m shadowkv_lab model prepare NAME (dequantize once into the cache)
#   cudatests  the CUDA tests: zero-copy stores, cache allocations, Triton kernels, the decode step's Triton backend and top-k keys
#   run        python -m shadowkv_lab run --model NAME --out $OUT/results ARGS      (a method grid, resumable)
#   text2json  python benchmarks/gpu_text2json.py --model NAME --out $OUT/results ARGS
#   decode     python benchmarks/bench_decode_step.py --out $OUT/decode ARGS        (synthetic, no model)
#   zerocopy   python benchmarks/bench_zero_copy.py --out $OUT/zero_copy.json     (no model: the zero-copy gather's rate
#              against span, host pages and launch order)
#   record     python benchmarks/bench_record.py --shape 28,12,2,128 --tokens 16384 --rows 42 --out $OUT/record.json
#              (no model: random weights of the 1.5B's attention shape; recorded against unrecorded steps)
#   runner     python benchmarks/bench_runner.py --model NAME --out-json $OUT/runner.json ARGS
#   kernels    python benchmarks/check_kernels_e2e.py --model NAME ARGS            (JSON into $OUT)
#   profile    python benchmarks/profile_step.py --model NAME --out $OUT/profile ARGS (stacking, capture, replayed steps,
#              each method's attention: where a grid step goes)
#   grid       each notebook of NOTEBOOKS (e.g. "07 02") as a script, its grid then its figures:
#              python -m shadowkv_lab.notebook_grid notebooks/NN_*.ipynb .stage/params/NN_*.yaml --all
#              (parameters from benchmarks/stage_gpu.py: results into .stage/store, figures into .stage/figures;
#              SHADOWKV_LAB_BATCH=64 SHADOWKV_LAB_REFILL=1 set the waves, as for the notebooks)
#   reproduce  python benchmarks/reproduce.py ARGS (parts of the reproduction grid, e.g. mn30_main --data-dir
#              .stage/data --out .stage/store --refill)
#   compare    run ARGS into a fresh store ($OUT/fresh), then python benchmarks/compare_stores.py STORE $OUT/fresh:
#              the same cells, rerun (another commit, batch or path), must have identical tokens to the stored ones
#   pack       the shards that STORE (default .stage/store) gained during this call, and .stage/figures, into
#              $OUT/new.tgz: bring them back and unpack them into the store (tar xzf new.tgz -C STORE_PARENT)
#
# ARGS (everything after --) go unchanged to each stage that runs a Python entry point with arguments (run, compare, text2json,
# decode, runner, kernels, profile, reproduce). Environment: OUT (default /tmp/out; stderr in $OUT/log.txt), LIMIT (seconds per stage,
# default 560), DRY=1 (print each stage's command, run nothing), SHADOWKV_LAB_COMMIT (the commit stamped on every
# result, `git rev-parse HEAD` where the tree was sent from: a host that receives a copy of the working tree may hold
# an older .git). Every argument is checked before any stage runs.
# Example: bash benchmarks/gpu_session.sh --model qwen2.5-coder-1.5b parts prep cudatests run -- --task text2json \
#              --n 16 --tokens 16384 --methods full,shadowkv_scaled,yakv --on-device --batch-size 64
set -uo pipefail
STAGES="parts wheels prep cudatests run compare text2json decode zerocopy record runner kernels profile grid reproduce pack"
usage() { echo "usage: $0 --model NAME STAGE [STAGE...] [-- ARGS...]; stages: $STAGES" >&2; exit 2; }

MODEL="" stages=() args=()
while [ $# -gt 0 ]; do
  case $1 in
    --model) [ $# -ge 2 ] || usage; MODEL=$2; shift 2 ;;
    --) shift; args=("$@"); break ;;
    -*) echo "unknown option $1" >&2; usage ;;
    *) [[ " $STAGES " == *" $1 "* ]] || { echo "unknown stage $1" >&2; usage; }; stages+=("$1"); shift ;;
  esac
done
[ -n "$MODEL" ] && [ ${#stages[@]} -gt 0 ] || usage

export PYTHONPATH="$PWD:$PWD/.pylib${PYTHONPATH:+:$PYTHONPATH}" SHADOWKV_LAB_CACHE="${SHADOWKV_LAB_CACHE:-$PWD/.stage/cache}"
export TQDM_MININTERVAL=60 HF_HUB_OFFLINE=1 OUT="${OUT:-/tmp/out}"
LIMIT="${LIMIT:-560}"

# step CMD...: run one stage's command under the time limit, stderr to the log (DRY=1: print it instead)
step() {
  if [ -n "${DRY:-}" ]; then printf '%q ' "$@"; echo; return 0; fi
  timeout "$LIMIT" "$@" 2>>"$OUT/log.txt"
}

parts() {  # the model's cache path and sha256 from the package, so that any offline model works
  local info path sha
  info=$(python -c "
import sys
from shadowkv_lab.models import OFFLINE_MODELS, cache_dir
s = OFFLINE_MODELS.get(sys.argv[1])
if s is None:
    sys.exit(f'parts: {sys.argv[1]!r} is not an offline model; known: {sorted(OFFLINE_MODELS)}')
print(cache_dir() / s.sha256[:16] / s.gguf_name, s.sha256)" "$MODEL") || return 3
  read -r path sha <<<"$info"
  if [ -n "${DRY:-}" ]; then echo "cat .stage/m.* > $path; sha256 $sha"; return 0; fi
  if [ -f "$path" ]; then echo "parts: $path already assembled"; return 0; fi
  ls .stage/m.* >/dev/null 2>&1 || { echo "parts: no .stage/m.* parts to assemble" >&2; return 3; }
  # the parts stay until the checksum passes: a missing or damaged part is re-sent alone, not all of them
  mkdir -p "$(dirname "$path")" && cat .stage/m.* > "$path.partial" || return 3
  echo "$sha  $path.partial" | sha256sum -c - || { rm -f "$path.partial"; ls -l .stage/m.* >&2; return 3; }
  mv "$path.partial" "$path" && rm -f .stage/m.*
}

[ -n "${DRY:-}" ] || mkdir -p "$OUT"
STORE="${STORE:-.stage/store}"
[ -n "${DRY:-}" ] || { START=$(mktemp); sleep 1; }  # pack: what is newer than this call's start

grid() {
  [ -n "${NOTEBOOKS:-}" ] || { echo "grid: set NOTEBOOKS, e.g. NOTEBOOKS=\"07 02\"" >&2; return 3; }
  local nb f
  for nb in $NOTEBOOKS; do
    f=$(ls notebooks/"$nb"_*.ipynb 2>/dev/null) || { echo "grid: no notebook $nb" >&2; return 3; }
    step python -m shadowkv_lab.notebook_grid "$f" ".stage/params/$(basename "$f" .ipynb).yaml" --all
  done
}

pack() {  # shard paths relative to the store's parent, so that they unpack into a store of the same name
  if [ -n "${DRY:-}" ]; then echo "tar czf $OUT/new.tgz (shards of $STORE newer than this call's start, .stage/figures)"; return 0; fi
  local parent; parent=$(dirname "$STORE")
  (cd "$parent" && find "$(basename "$STORE")" -type f -newer "$START" -name '*.parquet') > "$OUT/new.txt"
  tar czf "$OUT/new.tgz" -C "$parent" -T "$OUT/new.txt" && echo "pack: $(wc -l < "$OUT/new.txt") shards"
  [ ! -d .stage/figures ] || tar czf "$OUT/figures.tgz" -C .stage figures
}
for stage in "${stages[@]}"; do
  echo "[gpu_session] $stage"
  case $stage in
    parts) parts || exit $? ;;
    wheels) [ -d .pylib ] || step pip install -q --no-deps --target .pylib .whl/*.whl ;;
    prep) step python -m shadowkv_lab model prepare "$MODEL" ;;
    cudatests) TRITON_INTERPRET=0 step python -m pytest -q -p no:cacheprovider -x tests/test_zero_copy.py \
                 tests/test_cache_gpu.py tests/test_kernels.py tests/test_step_triton.py tests/test_selection.py ;;
    run) step python -m shadowkv_lab run --model "$MODEL" --out "$OUT/results" "${args[@]}" ;;
    compare) step python -m shadowkv_lab run --model "$MODEL" --out "$OUT/fresh" "${args[@]}" &&
             step python benchmarks/compare_stores.py "$STORE" "$OUT/fresh" --out "$OUT/agreement.csv" ;;
    text2json) step python benchmarks/gpu_text2json.py --model "$MODEL" --out "$OUT/results" "${args[@]}" ;;
    decode) step python benchmarks/bench_decode_step.py --out "$OUT/decode" "${args[@]}" ;;
    zerocopy) step python benchmarks/bench_zero_copy.py --out "$OUT/zero_copy.json" ;;
    record) step python benchmarks/bench_record.py --shape 28,12,2,128 --tokens 16384 --rows 42 --device cuda \
              --out "$OUT/record.json" ;;
    runner) step python benchmarks/bench_runner.py --model "$MODEL" --out-json "$OUT/runner.json" "${args[@]}" ;;
    kernels) step python benchmarks/check_kernels_e2e.py --model "$MODEL" "${args[@]}" ;;
    profile) step python benchmarks/profile_step.py --model "$MODEL" --out "$OUT/profile" "${args[@]}" ;;
    grid) grid ;;
    reproduce) step python benchmarks/reproduce.py "${args[@]}" ;;
    pack) pack ;;
  esac || echo "[gpu_session] $stage exited $?" >&2
done

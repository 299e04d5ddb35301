#!/usr/bin/env bash
# Run every workbook notebook with papermill, write figures (PDF + PNG) and a summary table.
#
#   ./run_all.sh                       # quick profile: 0.5B model on CPU, 2k-token prompts, 2 samples (13 to 17 min on 2 cores)
#   ./run_all.sh --profile full        # GPU scale: 1.5B model, 16k-token prompts, 24 samples, full sweeps, task caps
#   ./run_all.sh --only 02             # one notebook (number, full name or part of it; comma-separated list allowed)
#   ./run_all.sh --out DIR             # everything (executed notebooks, results store, figures, summary) under DIR
#   ./run_all.sh --model M --n N --tokens T    # override the profile's model, samples per task, prompt length
#   ./run_all.sh --set text2json.difficulty=calibrated   # a task generator knob (repeatable); replaces the profile's
#                                      # knobs for that task (full profile default: text2json.difficulty=calibrated)
#   ./run_all.sh --data-dir DIR        # samples read from the study's data files in DIR (docs/reproduction.md), not
#                                      # generated: the notebooks then share the reproduction's cells
#   ./run_all.sh --store DIR           # the results store (default OUT/results/PROFILE), e.g. the reproduction's
#   ./run_all.sh --stored-only         # draw from stored cells only: fail naming the missing cells, run none
#   ./run_all.sh --dry-run             # write and print every notebook's parameters, run nothing
#
# Default layout: executed notebooks in outputs/notebooks/, the results store in outputs/results/<profile>/ (shared by
# all notebooks; a second run reuses every stored cell and is fast), figures in figures/<profile>/, parameters in
# outputs/params/<profile>/, summary in outputs/summary.{csv,md}, the quick profile's shared prefills in
# outputs/prefills/ while it runs. Below 5 samples per cell the figures and tables are labelled a smoke test and
# carry no confidence intervals.
set -euo pipefail
cd "$(dirname "$0")"

NOTEBOOKS=(00_quickstart 01_context_intensive_vs_easy 02_key_compression 03_landmark_precision 04_chunk_size
           05_residual_landmarks 06_memory_budget 07_error_attribution 08_decode_speed)
PROFILES="quick, full"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
die() { echo "run_all.sh: error: $*" >&2; echo "run ./run_all.sh --help for usage" >&2; exit 2; }

PROFILE=quick
ONLY=""
OUT=""
MODEL_ARG=""
N_ARG=""
TOKENS_ARG=""
SETS=()
DATA_DIR=""
STORE=""
DRY=0
STORED_ONLY=0
set_opt() {  # option value
    case "$1" in
        --profile) PROFILE="$2" ;; --only) ONLY="$2" ;; --out) OUT="$2" ;; --model) MODEL_ARG="$2" ;;
        --n) N_ARG="$2" ;; --tokens) TOKENS_ARG="$2" ;; --set) SETS+=("$2") ;; --data-dir) DATA_DIR="$2" ;;
        --store) STORE="$2" ;;
    esac
}
while [ $# -gt 0 ]; do
    case "$1" in
        --profile|--only|--out|--model|--n|--tokens|--set|--data-dir|--store)
            [ $# -ge 2 ] && [ -n "$2" ] && [ "${2#--}" = "$2" ] || die "$1 needs a value"
            set_opt "$1" "$2"
            shift 2 ;;
        --profile=*|--only=*|--out=*|--model=*|--n=*|--tokens=*|--set=*|--data-dir=*|--store=*)
            set_opt "${1%%=*}" "${1#*=}"; shift ;;
        --dry-run) DRY=1; shift ;;
        --stored-only) STORED_ONLY=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown argument '$1'; allowed: --profile {${PROFILES}}, --only NAME, --out DIR, --model M, --n N, --tokens T, --set TASK.KEY=VALUE, --data-dir DIR, --store DIR, --stored-only, --dry-run, --help" ;;
    esac
done
case "$PROFILE" in
    quick|full) ;;
    *) die "--profile '$PROFILE' is not allowed; allowed profiles: ${PROFILES}" ;;
esac
for v in "$N_ARG" "$TOKENS_ARG"; do
    [ -z "$v" ] || [[ "$v" =~ ^[1-9][0-9]*$ ]] || die "--n and --tokens take a positive integer, got '$v'"
done
if [ -n "$DATA_DIR" ]; then
    [ -d "$DATA_DIR" ] || die "--data-dir '$DATA_DIR' is not a folder"
    [ "${#SETS[@]}" -eq 0 ] || die "--set does not apply with --data-dir: the data files were written with their own knobs"
    DATA_DIR="$(cd "$DATA_DIR" && pwd)"
fi
for kv in "${SETS[@]}"; do
    [[ "$kv" =~ ^[a-z0-9_]+\.[A-Za-z0-9_]+=.+$ ]] || die "--set '$kv': expected TASK.KEY=VALUE (e.g. text2json.difficulty=calibrated)"
done

# --only: each comma-separated item must match exactly one notebook (exact name, number prefix, or substring).
SELECTED=()
if [ -z "$ONLY" ]; then
    SELECTED=("${NOTEBOOKS[@]}")
else
    IFS=',' read -r -a ITEMS <<< "$ONLY"
    for item in "${ITEMS[@]}"; do
        matches=()
        for nb in "${NOTEBOOKS[@]}"; do
            if [ "$nb" = "$item" ] || [ "$nb" = "${item%.ipynb}" ]; then matches=("$nb"); break; fi
            case "$nb" in "$item"_*|*"$item"*) matches+=("$nb") ;; esac
        done
        if [ "${#matches[@]}" -ne 1 ]; then
            what="matches no notebook"
            [ "${#matches[@]}" -gt 1 ] && what="is ambiguous (${matches[*]})"
            die "--only '$item' $what; allowed: ${NOTEBOOKS[*]}"
        fi
        SELECTED+=("${matches[0]}")
    done
fi

if [ -n "$OUT" ]; then
    FIGURES="$OUT/figures/$PROFILE"
else
    OUT=outputs
    FIGURES="figures/$PROFILE"
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
mkdir -p "$FIGURES"
FIGURES="$(cd "$FIGURES" && pwd)"
RESULTS="${STORE:-$OUT/results/$PROFILE}"
mkdir -p "$RESULTS"
RESULTS="$(cd "$RESULTS" && pwd)"
NB_OUT="$OUT/notebooks"
PARAMS="$OUT/params/$PROFILE"
mkdir -p "$RESULTS" "$NB_OUT" "$PARAMS"

# shellcheck disable=SC1091
source scripts/ensure_env.sh

if [ "$PROFILE" = quick ]; then
    MODEL=qwen2.5-coder-0.5b; N=2; TOKENS=2048; MAX_NEW=256
    TASK_KW='{"text2json": {"n_gold": 5, "filler_share": 0.7}}'  # short answers for a 0.5B model on CPU
    # Notebooks 01 to 07 share prompts: each is prefilled once (about 20 s on 2 cores) and read back bit-identical
    # by the others (shadowkv_lab/prefill_store.py). Not on a GPU, where recomputing is faster than reading.
    # Ours (not one the caller set) is removed once every notebook has run: about 40 MB a prompt, and a code change
    # would leave stale entries behind; an interrupted run keeps it for the rerun.
    [ -n "${SHADOWKV_LAB_PREFILLS:-}" ] || OWN_PREFILLS="$OUT/prefills"
    export SHADOWKV_LAB_PREFILLS="${SHADOWKV_LAB_PREFILLS:-$OUT/prefills}"
else
    MODEL=qwen2.5-coder-1.5b; N=24; TOKENS=16384; MAX_NEW=null  # null: each task's own cap (Text2JSON 1024)
    TASK_KW='{"text2json": {"difficulty": "calibrated"}}'  # the calibrated Text2JSON setting (benchmarks/README.md)
fi
MODEL="${MODEL_ARG:-$MODEL}"; N="${N_ARG:-$N}"; TOKENS="${TOKENS_ARG:-$TOKENS}"
if [ "${#SETS[@]}" -gt 0 ]; then  # --set TASK.KEY=VALUE: that task's knobs become the --set ones (values parsed as YAML)
    TASK_KW="$(python -c 'import json, sys, yaml
kw, seen = json.loads(sys.argv[1]), set()
for item in sys.argv[2:]:
    key, value = item.split("=", 1)
    task, knob = key.split(".", 1)
    if task not in seen:
        kw[task], seen = {}, seen | {task}
    kw[task][knob] = yaml.safe_load(value)
print(json.dumps(kw))' "$TASK_KW" "${SETS[@]}")"
fi

# Profile-specific parameters per notebook (YAML, on top of the notebook's own defaults).
extra_params() {
    if [ -n "$DATA_DIR" ]; then echo "data_dir: '$DATA_DIR'"; else echo "task_kw: $TASK_KW"; fi
    [ "$PROFILE" = full ] || return 0
    # ShadowKV at the paper's rank 160 (62% of the 1.5B's H*d = 256), as in the reproduction grid; notebook 02 sweeps it
    case "$1" in 01_*|06_*|07_*) echo 'shadowkv_rank: 160' ;; esac
    case "$1" in
        01_*) echo 'tasks: [text2json, multineedle, ruler_niah_single, ruler_niah_multikey, ruler_vt]' ;;
        02_*) echo 'rank_factors: [0.25, 0.5, 1, 2, 4]'; echo 'key_formats: [exact, fp8, nvfp4, higgs4, higgs2, higgs4_centred, higgs2_centred]' ;;
        03_*) echo 'precisions: [bf16, fp8, nvfp4, higgs4, higgs3, higgs2, higgs1]' ;;
        04_*) echo 'chunk_sizes: [1, 2, 4, 8, 16]' ;;
        05_*) echo 'precisions: [higgs3, higgs2, residual, higgs1]' ;;
        06_*) echo 'shadowkv_budgets: [1, 2, 4, 10]'; echo 'yakv_budgets: [0.25, 0.5, 1, 2]' ;;
    esac
}

params() {  # notebook: its papermill parameters (YAML)
    echo "model: $MODEL"
    echo "profile: $PROFILE"
    echo "results_dir: '$RESULTS'"
    echo "figures_dir: '$FIGURES'"
    echo "n: $N"
    echo "tokens: $TOKENS"
    echo "max_new_tokens: $MAX_NEW"
    extra_params "$1"
}

if [ "$DRY" = 1 ]; then  # parameters, then each notebook's grid and the profile's estimated GPU time
    plans=()
    for nb in "${SELECTED[@]}"; do
        echo "# $nb"
        params "$nb" | tee "$PARAMS/$nb.yaml"
        [ "$nb" = 08_decode_speed ] && continue  # benchmarks only, no grid
        python -m shadowkv_lab.notebook_grid "notebooks/$nb.ipynb" "$PARAMS/$nb.yaml" --dry-run \
            --plan-out "$PARAMS/$nb.plan.csv" > "$PARAMS/$nb.plan.log" 2>&1 \
            || { tail -3 "$PARAMS/$nb.plan.log" >&2; die "$nb: its grid could not be planned (above; $PARAMS/$nb.plan.log)"; }
        grep -E "^(methods|cells|  total)" "$PARAMS/$nb.plan.log" || true
        plans+=("$PARAMS/$nb.plan.csv")
    done
    [ "${#plans[@]}" -eq 0 ] || python -m shadowkv_lab.notebook_grid --total "${plans[@]}"
    exit 0
fi

T0=$(date +%s)
if [ "$STORED_ONLY" = 1 ]; then export SHADOWKV_LAB_GRID=stored; fi  # wb.run: stored rows or MissingCells, never a run
echo "[run_all] profile=$PROFILE model=$MODEL n=$N tokens=$TOKENS task_kw=$TASK_KW notebooks: ${SELECTED[*]}"
echo "[run_all] results store: $RESULTS"
if [ "${SELECTED[*]}" != "08_decode_speed" ]; then
    python -m shadowkv_lab model prepare "$MODEL" >/dev/null
fi

for nb in "${SELECTED[@]}"; do
    p="$PARAMS/$nb.yaml"
    params "$nb" > "$p"
    t=$(date +%s)
    echo "[run_all] $nb ..."
    python -m papermill "notebooks/$nb.ipynb" "$NB_OUT/$nb.ipynb" -f "$p" -k python3 --cwd "$PWD" --no-progress-bar \
        || { echo "[run_all] $nb FAILED: see $NB_OUT/$nb.ipynb" >&2; exit 1; }
    echo "[run_all] $nb done in $(( $(date +%s) - t ))s"
done

# One store (recording is part of a cell's key); "$RESULTS/recorded" is read too for stores written before that,
# a cell present in both counted once.
python -m shadowkv_lab.analysis "$RESULTS" "$RESULTS/recorded" --out "$OUT" --name summary > /dev/null
echo "[run_all] summary: $OUT/summary.csv, $OUT/summary.md"
echo "[run_all] figures: $FIGURES"
[ -z "${OWN_PREFILLS:-}" ] || rm -rf "$OWN_PREFILLS"
echo "[run_all] wall time: $(( $(date +%s) - T0 ))s (profile $PROFILE)"

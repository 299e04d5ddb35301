#!/usr/bin/env bash
# The test suite: unit tests on tiny in-code models, Triton kernels under the CPU interpreter, notebook smoke
# runs, and the slow end-to-end tests on the real 0.5B default model (prepared offline from PyPI parts).
# Extra arguments go to pytest (e.g. ./run_tests.sh -m "not slow").
set -euo pipefail
cd "$(dirname "$0")"
source scripts/ensure_env.sh
export TRITON_INTERPRET="${TRITON_INTERPRET:-1}"
python -m pytest -q -rs "$@"

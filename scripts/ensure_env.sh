# Sourced by run_all.sh and run_tests.sh: use the active virtual/conda env, else create and activate .venv,
# then install the package (editable, with test extras) once per pyproject.toml version.
if [ -z "${VIRTUAL_ENV:-}" ] && [ -z "${CONDA_PREFIX:-}" ]; then
    if [ ! -x .venv/bin/python ]; then
        echo "[shadowkv-lab] creating .venv" >&2
        python3 -m venv .venv
    fi
    # shellcheck disable=SC1091
    source .venv/bin/activate
fi
stamp="$(python -c 'import sys,hashlib;print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest()[:16])')"
marker="$(python -c 'import sys;print(sys.prefix)')/.shadowkv-lab-installed"
if [ "$(cat "$marker" 2>/dev/null)" != "$stamp" ]; then
    python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
    if ! python -c "import torch" 2>/dev/null; then
        if command -v nvidia-smi >/dev/null 2>&1; then
            python -m pip install -q "torch>=2.6,<2.15"
        else
            # CPU-only machine: the CPU wheel (a plain `torch` would pull a multi-GB CUDA build).
            python -m pip install -q "torch==2.13.0"
        fi
    fi
    python -m pip install -q -e ".[test]"
    echo "$stamp" > "$marker"
fi
# Register the notebook clean filter named in .gitattributes (local to this checkout; harmless outside git).
if [ -d .git ] || git rev-parse --git-dir >/dev/null 2>&1; then
    git config filter.strip-notebooks.clean "python scripts/strip_notebooks.py --stdin" 2>/dev/null || true
    git config filter.strip-notebooks.smudge cat 2>/dev/null || true
fi

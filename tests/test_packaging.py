"""pyproject.toml and environment.yml list the same dependencies; the CLI exposes its subcommands."""

import re
import subprocess
import sys
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_matches_pyproject():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda_pins = [p for p in pip if not p.startswith("-e")]
    assert sorted(conda_pins) == sorted(deps)
    assert any(p.startswith("-e") and "[test]" in p for p in pip)


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = (ROOT / "README.md").read_text()
    cmd = re.findall(r"^\./run_tests\.sh$", ci, re.M)
    assert cmd, "CI must call ./run_tests.sh"
    assert "./run_tests.sh" in readme and "./run_all.sh" in readme


def test_cli_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "shadowkv_lab", "--help"], capture_output=True, text=True, check=True).stdout
    for sub in ("model", "env", "presets", "generate"):
        assert sub in out


def test_cli_env_runs():
    out = subprocess.run([sys.executable, "-m", "shadowkv_lab", "env"], capture_output=True, text=True, check=True).stdout
    assert "torch" in out and "cache_dir" in out

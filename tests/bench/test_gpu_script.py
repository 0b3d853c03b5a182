"""bench/gpu.sh, the serving comparison for an NVIDIA GPU box: checked here where no GPU is.

It cannot run without a GPU, so this proves what can be proved on CPU: bash parses it, it refuses a
missing model folder before touching anything, and it calls ``bench.serving`` with the flags that
its header documents as the contract.
"""

from __future__ import annotations

import re
import subprocess

from srcroot import REPO_ROOT

SCRIPT = REPO_ROOT / "bench" / "gpu.sh"


def test_gpu_script_is_valid_bash():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr


def test_gpu_script_refuses_a_folder_without_a_model(tmp_path):
    result = subprocess.run(
        ["bash", str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=30, check=False, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "config.json" in result.stderr


def test_gpu_script_drives_bench_serving_with_the_documented_flags():
    text = SCRIPT.read_text()
    call = re.search(r"^\.venv/bin/python -m bench\.serving (.*)$", text, re.M)
    assert call, "bench/gpu.sh must run python -m bench.serving"
    for flag in ("--backend vllm", "--base-url", "--model"):
        assert flag in call.group(1)
        assert flag in text.split("set -euo pipefail")[0], f"document {flag} in the script's header"
    assert "--enable-prefix-caching" in text and "--tensor-parallel-size" in text

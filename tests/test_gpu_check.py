"""``scripts/gpu_check.sh --dry-run``: the GPU check's plumbing (staging, peers, the gpu tests' collection, the
benchmark writing its results) on the CPU at toy sizes, so the script is ready when a GPU is lent."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    out = tmp_path / "gpu"
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), str(out), "--dry-run"], capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    log = (out / "gpu_check.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    assert "gpu_check: exit 0" in log
    assert "== gpu tests (collect only): exit 0" in log and "== benchmark (dry run, cpu): exit 0" in log
    results = [json.loads(p.read_text()) for p in out.glob("*.json")]
    assert len(results) == 1
    peers = results[0]["configs"][0]["peers"]
    assert peers["fastaug-numba"]["forward"]["img_s"] > 0
    assert "fastaug-triton-graph" not in peers and "triton-augment" not in peers  # CUDA-only peers: not run on the CPU


def test_gpu_check_rejects_unknown_option(tmp_path):
    proc = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), str(tmp_path), "--fast"], capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown option: --fast" in proc.stdout + proc.stderr

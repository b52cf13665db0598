"""bench/gpu_throughput.py, the script a GPU machine runs, works end to end (here on the CPU provider, tiny)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_the_gpu_bench_runs_on_cpu_and_reports_images_per_second_and_stage_shares(tmp_path: Path,
                                                                                   data_dir: Path) -> None:
    if not (REPO / "models" / "default" / "manifest.json").is_file():
        pytest.skip("models/default is absent")
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_throughput.py"), "--n", "4", "--batch", "2",
                           "--seconds", "0", "--provider", "cpu", "--threads", "1", "--fp16", "off",
                           "--images", str(data_dir / "flickr8k" / "images"), "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())["results"]
    assert [r["config"] for r in results] == ["io-binding", "plain"]
    assert [r["io_binding"] for r in results] == [True, False]
    for r in results:
        assert r["images"] >= 4 and r["images_per_s"] > 0
        assert sum(r["share"].values()) == pytest.approx(1.0, abs=0.01)
        assert r["share"]["encoder"] > 0 and r["share"]["decoder steps"] > 0
    assert results[0]["share"]["row gathers"] > 0 and results[1]["share"]["row gathers"] == 0
    assert "img/s" in proc.stdout

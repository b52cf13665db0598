"""bench/steady_latency.py runs end to end (bot, worker and Redis as processes, the stand-in) at a tiny rate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_the_steady_latency_bench_describes_every_photo_and_splits_the_time(tmp_path: Path, data_dir: Path) -> None:
    if not (REPO / "models" / "default" / "manifest.json").is_file():
        pytest.skip("models/default is absent")
    out = tmp_path / "steady.json"
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "steady_latency.py"), "--rate", "2", "--seconds", "2",
                           "--photos", "6", "--threads", "1", "--drain-s", "60", "--out", str(out)],
                          capture_output=True, text=True, timeout=400,
                          env={**os.environ, "CAPTIONBOT_DATA": str(data_dir)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run] = json.loads(out.read_text())
    assert run["posted"] == 4 and run["described"] == 4 and run["unanswered"] == 0
    assert 0 < run["latency_ms"]["p50"] <= run["latency_ms"]["p99"] <= run["latency_ms"]["max"]
    assert run["worker_job_latency_s (enqueue -> result)"]["count"] == 4
    assert set(run["cpu_s_per_photo"]) == {"bot", "worker", "stand-in + load"}

"""``captionbot worker`` as an operator runs it: with the model bundle, and with a missing one."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from queue_harness import REPO_ROOT, queue_settings, wait_for

from captionbot import formats
from captionbot.queue.client import CaptionClient
from tests.cpu import auto_suffix


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (80, 60), (20, 140, 60)).save(buf, "PNG")
    return buf.getvalue()


async def test_worker_command_serves_captions_from_the_bundle_and_stops_on_sigterm(
    redis_url: str, caption_bundle: Path
) -> None:
    settings = queue_settings(redis_url)
    env = dict(os.environ, CAPTIONBOT_REDIS_URL=redis_url, CAPTIONBOT_STREAM=settings.stream,
               CAPTIONBOT_BUNDLE=str(caption_bundle), CAPTIONBOT_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "captionbot.cli", "worker", "--name", "cli-worker"],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client = await CaptionClient.connect(settings)
    try:
        result = await client.caption(_png(), timeout=30)
        assert result.ok and result.worker == "cli-worker"
        manifest = json.loads((caption_bundle / "manifest.json").read_text())
        # CAPTIONBOT_VARIANT unset (auto): a CPU worker runs the bundle's int8 variant when it ships one (with the
        # fp32 encoder on a CPU without VNNI)
        suffix = "" if "CUDAExecutionProvider" in _providers() else auto_suffix(manifest["variants"],
                                                                                 manifest["files"])
        assert result.model_version == manifest["model_version"] + suffix
        stats = await client.stats()
        assert stats["workers"] == 1 and stats["model_version"] == result.model_version
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.wait, 15) == 0
        await wait_for(lambda: _no_workers(client), what="worker signed off")
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate(timeout=10)[0].decode()
        await client.close()
    assert "loaded model" in out and "stopped after 1 jobs" in out


def _providers() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


def test_worker_command_refuses_a_variant_name_that_is_no_name_in_one_line(tmp_path: Path) -> None:
    env = dict(os.environ, CAPTIONBOT_VARIANT="../int8", CAPTIONBOT_REDIS_URL="redis://127.0.0.1:1/0")
    proc = subprocess.run([sys.executable, "-m", "captionbot.cli", "worker"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "CAPTIONBOT_VARIANT='../int8'" in proc.stderr and "auto, fp32, int8" in proc.stderr, proc.stderr


async def _no_workers(client: CaptionClient) -> bool:
    return (await client.stats())["workers"] == 0


def test_worker_command_without_a_bundle_says_how_to_get_one(tmp_path: Path) -> None:
    env = dict(os.environ, CAPTIONBOT_BUNDLE=str(tmp_path / "nowhere"))
    proc = subprocess.run([sys.executable, "-m", "captionbot.cli", "worker"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "no model bundle at" in proc.stderr and "make model" in proc.stderr


def test_worker_command_with_a_bad_bundle_exits_2_in_one_line(tmp_path: Path, caption_bundle: Path) -> None:
    """A tampered graph and a broken manifest: exit 2, one error line naming the bundle, no traceback."""
    tampered, broken = tmp_path / "tampered", tmp_path / "broken"
    shutil.copytree(caption_bundle, tampered)
    shutil.copytree(caption_bundle, broken)
    with open(tampered / "decoder_step.onnx", "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01\x02")
    (broken / "manifest.json").write_text("{not json")
    for bundle in (tampered, broken):
        env = dict(os.environ, CAPTIONBOT_BUNDLE=str(bundle), CAPTIONBOT_REDIS_URL="redis://127.0.0.1:1/0")
        proc = subprocess.run([sys.executable, "-m", "captionbot.cli", "worker"], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, out[-3000:]
        assert "Traceback" not in out
        errors = [line for line in out.splitlines() if " ERROR " in line]
        assert len(errors) == 1 and f"cannot load the model bundle at {bundle}" in errors[0], out


def test_worker_command_refuses_a_manifest_that_disagrees_with_its_graphs(tmp_path: Path, caption_bundle: Path) -> None:
    """input_size, grid, hidden size or vocabulary size edited in manifest.json (which the file hashes do not
    cover): the worker checks them against the graphs and exits 2 in one line, instead of serving failures."""
    edits = {"input_size": ("encoder", "input_size", [64, 64]), "grid": ("encoder", "grid", [4, 4]),
             "hidden": ("decoder", "hidden_dim", 64)}
    for label, (part, field, value) in edits.items():
        bundle = tmp_path / label
        shutil.copytree(caption_bundle, bundle)
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest[part][field] = value
        manifest["digest"] = formats.manifest_digest(manifest)  # sealed, as a faulty exporter would write it
        (bundle / "manifest.json").write_text(json.dumps(manifest))
        env = dict(os.environ, CAPTIONBOT_BUNDLE=str(bundle), CAPTIONBOT_REDIS_URL="redis://127.0.0.1:1/0",
                   CAPTIONBOT_THREADS="1")
        proc = subprocess.run([sys.executable, "-m", "captionbot.cli", "worker"], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 2, (label, out[-3000:])
        assert "Traceback" not in out and "manifest implies" in out, (label, out[-3000:])


def _worker_fails_to_start(bundle: Path, *flags: str) -> str:
    """Run ``captionbot worker`` on ``bundle``; assert exit 2 with one error line and no traceback; that line."""
    env = dict(os.environ, CAPTIONBOT_BUNDLE=str(bundle), CAPTIONBOT_REDIS_URL="redis://127.0.0.1:1/0",
               CAPTIONBOT_THREADS="1")
    env.pop("CAPTIONBOT_ALLOW_UNSEALED", None)
    proc = subprocess.run([sys.executable, "-m", "captionbot.cli", "worker", *flags], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if " ERROR " in line]
    assert len(errors) == 1, out[-3000:]
    return errors[0]


def test_worker_command_with_a_model_that_fails_its_self_test_exits_2_in_one_line(tmp_path: Path) -> None:
    """Hashes, bounds and graph shapes all pass, but the model is broken (shuffled decoder weights) or its max_len
    cuts every caption: the worker never serves, and says why in one line."""
    from test_selftest import with_max_len, with_scrambled_decoder

    line = _worker_fails_to_start(with_scrambled_decoder(tmp_path / "scrambled"))
    assert "failed its self-test" in line and "not confident" in line, line
    line = _worker_fails_to_start(with_max_len(tmp_path / "short", 8))
    assert "failed its self-test" in line and "cut at max_len 8" in line, line


def test_worker_command_refuses_an_unsealed_or_out_of_bounds_manifest(tmp_path: Path, caption_bundle: Path) -> None:
    """A manifest without a digest is refused unless --allow-unsealed; one whose max_len is 0 (re-sealed, so its
    digest matches) is refused by the bounds, naming the field."""
    unsealed = tmp_path / "unsealed"
    shutil.copytree(caption_bundle, unsealed)
    manifest = json.loads((unsealed / "manifest.json").read_text())
    manifest["decoder"]["max_len"] = 8  # in bounds, too short for the shipped model (see test_selftest.py)
    (unsealed / "manifest.json").write_text(json.dumps({**manifest, "digest": ""}))
    line = _worker_fails_to_start(unsealed)
    assert "has no digest" in line and "--allow-unsealed" in line, line
    line = _worker_fails_to_start(unsealed, "--allow-unsealed")  # loaded: it gets as far as the self-test
    assert "has no digest" not in line and "self-test" in line, line

    zero = tmp_path / "zero"
    shutil.copytree(caption_bundle, zero)
    manifest["decoder"]["max_len"] = 0
    (zero / "manifest.json").write_text(json.dumps({**manifest, "digest": formats.manifest_digest(manifest)}))
    line = _worker_fails_to_start(zero)
    assert "manifest field decoder.max_len = 0" in line, line

"""``captionbot worker``: serve the caption job stream with the model bundle until SIGTERM or Ctrl-C.

Configuration comes from the environment (``CAPTIONBOT_REDIS_URL`` with password/TLS in the URL, batch size,
timeouts, bundle: see ``captionbot/settings.py``); the flags below override a few of them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from captionbot.inference.worker import CaptionModel

    from captionbot.settings import Settings

log = logging.getLogger(__name__)

# Stand-in models for tests and benchmarks only (hidden from --help): no model is loaded.
TEST_MODELS = ("null", "poison")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle directory (default: $CAPTIONBOT_BUNDLE"
                        " or models/default)")
    parser.add_argument("--variant", default=None, help="fp32 | int8 | fp16 (default: $CAPTIONBOT_VARIANT)")
    parser.add_argument("--provider", default=None, help="auto | cpu | cuda (default: $CAPTIONBOT_PROVIDER)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (0: its default)")
    parser.add_argument("--batch-size", type=int, default=None, help="jobs per batch (default: $CAPTIONBOT_BATCH_SIZE)")
    parser.add_argument("--name", default=None, help="consumer name in the group (default: host-pid)")
    parser.add_argument("--metrics-port", type=int, default=None, help="port for /healthz /readyz /metrics (0: off)")
    parser.add_argument("--test-model", choices=TEST_MODELS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--test-model-delay-ms", type=float, default=0.0, help=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> int:
    from captionbot.settings import load_settings

    overrides = {k: v for k, v in {
        "bundle": args.bundle, "variant": args.variant, "provider": args.provider, "threads": args.threads,
        "batch_size": args.batch_size, "metrics_port": args.metrics_port,
    }.items() if v is not None}
    settings = load_settings(**overrides)
    try:
        captioner = load_captioner(settings, args.test_model, args.test_model_delay_ms / 1000)
    except FileNotFoundError as exc:
        log.error("%s", exc)
        return 2
    from captionbot.queue.connection import is_embedded

    if is_embedded(settings):
        log.warning("CAPTIONBOT_REDIS_URL is not set: serving an in-process queue that no bot can reach "
                    "(use `captionbot run` for bot and worker in one process)")
    return asyncio.run(serve_until_signalled(settings, captioner, args.name))


def load_captioner(settings: Settings, test_model: str | None = None, delay_s: float = 0.0) -> CaptionModel:
    """The real captioner from ``settings.bundle``, or a test stand-in when ``test_model`` is given."""
    if test_model:
        from captionbot.inference.null_captioner import NullCaptioner, PoisonCaptioner

        log.warning("worker runs the %r TEST model: captions are not real", test_model)
        return (PoisonCaptioner if test_model == "poison" else NullCaptioner)(delay_s=delay_s)
    if not (Path(settings.bundle) / "manifest.json").is_file():
        raise FileNotFoundError(
            f"no model bundle at {settings.bundle}: build one (`make model`) or set CAPTIONBOT_BUNDLE / --bundle"
        )
    from captionbot.inference.captioner import Captioner

    captioner = Captioner.load(settings.bundle, variant=settings.variant, provider=settings.provider,
                               threads=settings.threads, read_text=settings.read_text)
    log.info("loaded model %s from %s", captioner.model_version, settings.bundle)
    return captioner


async def serve_until_signalled(settings: Settings, captioner: CaptionModel, name: str | None = None) -> int:
    """Run a worker (and the health/metrics server when configured); SIGTERM/SIGINT finish the batch and exit."""
    from captionbot.inference.worker import Worker

    from captionbot.queue.health import HealthServer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    worker = Worker(settings, captioner, name=name)
    health = HealthServer(settings.metrics_port, lambda: worker.ready) if settings.metrics_port else None
    try:
        await worker.serve(stop)
    finally:
        if health:
            health.close()
    return 0

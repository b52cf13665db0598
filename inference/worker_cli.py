"""``captionbot worker``: load the model bundle and serve the caption job stream until SIGTERM or Ctrl-C.

The serving loop is :class:`captionbot.queue.worker.Worker`; this command chooses and loads the model for it
(the queue package itself never imports onnxruntime). Start-up, signals and exit codes: :mod:`captionbot.process`.

Configuration comes from the environment (``CAPTIONBOT_REDIS_URL`` with password/TLS in the URL, batch size,
timeouts, bundle: see ``captionbot/settings.py``); the flags below override a few of them.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from captionbot.formats import MANIFEST_FILE

if TYPE_CHECKING:
    from captionbot.queue.worker import CaptionModel, Worker
    from captionbot.settings import Settings

log = logging.getLogger(__name__)

# Stand-in models for tests and benchmarks only (hidden from --help): no model is loaded.
TEST_MODELS = ("null", "poison", "crash")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, default=None, help="model bundle directory (default: $CAPTIONBOT_BUNDLE"
                        " or models/default)")
    parser.add_argument("--variant", default=None, help="auto | fp32 | int8 | fp16 (default: $CAPTIONBOT_VARIANT; "
                        "auto: int8 on CPU when the bundle ships it, else fp32)")
    parser.add_argument("--provider", default=None, help="auto | cpu | cuda (default: $CAPTIONBOT_PROVIDER)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime threads (0: its default); with "
                        "--processes, shared out among the processes")
    parser.add_argument("--processes", default=None, help="worker processes, each a consumer with its share of the "
                        "threads: a number or auto, one per CPU (default: $CAPTIONBOT_WORKER_PROCESSES or 1)")
    parser.add_argument("--batch-size", type=int, default=None, help="jobs per batch (default: $CAPTIONBOT_BATCH_SIZE)")
    parser.add_argument("--name", default=None, help="consumer name in the group (default: host-pid; with "
                        "--processes, NAME-0, NAME-1, ...)")
    parser.add_argument("--allow-unsealed", action="store_true", default=None,
                        help="load a bundle whose manifest has no digest (default: $CAPTIONBOT_ALLOW_UNSEALED)")
    parser.add_argument("--metrics-port", type=int, default=None, help="port for /healthz /readyz /metrics (0: off)")
    parser.add_argument("--test-model", choices=TEST_MODELS, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--test-model-delay-ms", type=float, default=0.0, help=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> int:
    import sys

    from pydantic import ValidationError

    from captionbot.process import EXIT_CANNOT_START, run_service
    from captionbot.settings import explain, load_settings

    overrides = {k: v for k, v in {
        "bundle": args.bundle, "variant": args.variant, "provider": args.provider, "threads": args.threads,
        "worker_processes": args.processes, "batch_size": args.batch_size, "metrics_port": args.metrics_port,
        "allow_unsealed": args.allow_unsealed,
    }.items() if v is not None}
    try:
        settings = load_settings(**overrides)
    except ValidationError as exc:  # a bad flag: one line and exit code 2, as for a bad environment variable
        print(f"captionbot worker cannot start: {explain(exc)}", file=sys.stderr)
        return EXIT_CANNOT_START
    delay_s = args.test_model_delay_ms / 1000
    if settings.worker_processes > 1:
        from captionbot.inference.worker_processes import Supervisor

        from captionbot.queue.worker import default_worker_name

        if settings.redis_url is None:
            print("captionbot worker cannot start: CAPTIONBOT_WORKER_PROCESSES > 1 needs CAPTIONBOT_REDIS_URL (the "
                  "processes share the queue through Redis)", file=sys.stderr)
            return EXIT_CANNOT_START
        supervisor = Supervisor(settings, args.name or default_worker_name(), args.test_model, delay_s,
                                logging.getLevelName(logging.getLogger().level))
        return run_service("worker", supervisor.serve)
    return run_service("worker", lambda stop: serve(settings, stop, args.name, args.test_model, delay_s))


async def serve(settings: Settings, stop: asyncio.Event, name: str | None = None, test_model: str | None = None,
                delay_s: float = 0.0, ready_flag: Any = None) -> int:
    """Load the model, then serve the stream (and the health/metrics endpoints when configured) until ``stop``.

    ``ready_flag``: a shared value (``multiprocessing.Value``) kept equal to the worker's readiness, for the
    supervisor of several worker processes (``inference/worker_processes.py``)."""
    from captionbot.process import health_endpoints
    from captionbot.queue.connection import is_embedded
    from captionbot.queue.worker import Worker

    captioner = load_captioner(settings, test_model, delay_s)
    if is_embedded(settings):
        log.warning("CAPTIONBOT_REDIS_URL is not set: serving an in-process queue that no bot can reach "
                    "(use `captionbot run` for bot and worker in one process)")
    worker = Worker(settings, captioner, name=name)
    mirror = asyncio.create_task(_mirror_ready(worker, ready_flag)) if ready_flag is not None else None
    try:
        with health_endpoints(settings.metrics_port, lambda: worker.ready):
            await worker.serve(stop)
    finally:
        if mirror:
            mirror.cancel()
            ready_flag.value = 0
    return 0


async def _mirror_ready(worker: Worker, flag: Any) -> None:
    while True:
        flag.value = int(worker.ready)
        await asyncio.sleep(0.2)


def load_captioner(settings: Settings, test_model: str | None = None, delay_s: float = 0.0) -> CaptionModel:
    """The real captioner from ``settings.bundle``, or a test stand-in when ``test_model`` is given.

    Raises :class:`~captionbot.process.StartupError` when there is no bundle or it does not load (a hash that does
    not match, a bad manifest, a graph onnxruntime cannot open)."""
    if test_model:
        from captionbot.inference.null_captioner import CrashCaptioner, NullCaptioner, PoisonCaptioner

        log.warning("worker runs the %r TEST model: captions are not real", test_model)
        model = {"poison": PoisonCaptioner, "crash": CrashCaptioner}.get(test_model, NullCaptioner)
        return model(delay_s=delay_s)
    if not (Path(settings.bundle) / MANIFEST_FILE).is_file():
        from captionbot.process import StartupError

        raise StartupError(
            f"no model bundle at {settings.bundle}: build one (`make model`) or set CAPTIONBOT_BUNDLE / --bundle"
        )
    from captionbot.inference.captioner import Captioner

    from captionbot.process import StartupError

    try:
        captioner = Captioner.load(settings.bundle, variant=settings.variant, provider=settings.provider,
                                   threads=settings.threads, read_text=settings.read_text,
                                   io_binding=settings.io_binding, allow_unsealed=settings.allow_unsealed)
    except Exception as exc:  # a tampered, truncated or foreign bundle: the worker cannot start (exit 2, one line)
        first_line = (str(exc).strip().splitlines() or [""])[0][:300]
        raise StartupError(f"cannot load the model bundle at {settings.bundle}: {type(exc).__name__}: {first_line}")\
            from None
    self_test(captioner, settings)
    log.info("loaded model %s from %s (self-test caption passed)", captioner.model_version, settings.bundle)
    return captioner


def self_test(captioner: CaptionModel, settings: Settings) -> None:
    """Caption the built-in test image before serving (``inference/selftest.py``: a finished, confident sentence of
    at least a few words, and a heatmap): a worker whose model cannot is never ready.

    Raises :class:`~captionbot.process.StartupError` (exit 2, one line) with what went wrong."""
    from captionbot.inference.captioner import Captioner
    from captionbot.inference.selftest import SelfTestFailed, run_self_test

    from captionbot.process import StartupError

    if not isinstance(captioner, Captioner):
        return
    try:
        result = run_self_test(captioner, beam_size=settings.beam_size)
    except SelfTestFailed as exc:
        raise StartupError(f"the model at {settings.bundle} failed its self-test: {exc}") from None
    except Exception as exc:
        raise StartupError(f"the model at {settings.bundle} failed its self-test caption: "
                           f"{type(exc).__name__}: {str(exc)[:200]}") from None
    log.info("self-test caption of the built-in image: %r (mean log-probability %.2f per token)", result.caption,
             result.mean_log_prob)

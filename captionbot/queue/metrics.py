"""Prometheus metrics of the queue (one set per process, on the default registry; with several worker processes,
``inference/worker_processes.py`` adds theirs up in Prometheus multiprocess mode: the queue gauges are the same for
every worker, so the largest live one is shown)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

QUEUE_DEPTH = Gauge("captionbot_queue_depth", "Jobs waiting in the stream, not yet delivered to a worker",
                    multiprocess_mode="livemax")
QUEUE_PENDING = Gauge("captionbot_queue_pending", "Jobs delivered to a worker and not yet answered",
                      multiprocess_mode="livemax")
BATCH_SIZE = Histogram(
    "captionbot_batch_size", "Jobs per worker batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128)
)
BATCH_SECONDS = Histogram("captionbot_batch_inference_seconds", "Model time per batch (all jobs of one read)")
JOB_LATENCY = Histogram(
    "captionbot_job_latency_seconds",
    "From enqueue to published result",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
JOBS = Counter("captionbot_jobs_total", "Jobs answered by this worker", ["outcome"])  # ok | rejected | dead_letter
FAILURES = Counter("captionbot_job_failures_total", "Failed job attempts", ["kind"])  # model_error | unreadable
RECLAIMS = Counter("captionbot_reclaims_total", "Jobs taken over from a worker that stopped answering")
DUPLICATES = Counter("captionbot_duplicate_answers_total", "Answers not published because the job was answered")
ENQUEUED = Counter("captionbot_enqueued_total", "Jobs added by this producer")
BUSY = Counter("captionbot_busy_total", "Jobs refused because the queue was full or unreachable")

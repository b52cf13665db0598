"""The caption job queue on Redis Streams: the bot adds jobs, workers answer them.

Modules, one concept each: ``connection`` (real Redis or the embedded in-process backend), ``streams`` (the
consumer group; key names are ``captionbot.formats.RedisKeys``), ``scripts`` (the atomic steps, as Lua), ``client``
(the bot's side: enqueue, await the result), ``consumer`` (the worker's side: read batches, reclaim, publish, and
the one retry rule, ``next_step``: retry or dead-letter), ``worker`` (the serving loop around a model it is
handed), ``dead_letter`` (reading what was given up on), ``metrics`` and ``health`` (Prometheus and the HTTP
probes). None imports torch, discord or onnxruntime.

What the guarantees mean here (the tests in ``tests/queue`` prove each):

**At least once.** A job leaves the stream only in the same atomic step (a Lua script) that publishes its answer
(a caption, a refusal such as "not an image", or a dead-letter failure). A worker that dies, loses Redis, or is
stopped anywhere before that step leaves the job in the consumer group's pending list, and it is run again. So a
job may be *run* more than once, but it is *answered* once: the publishing step acknowledges the stream entry and
sets a per-job-id "answered" mark, and publishes nothing when either shows the job was already answered. The bot
side also drops any second result for a job id, so each result reaches the instance that asked exactly once.

**Reclaimed after.** A job delivered to a worker that has not answered it for ``claim_idle_ms`` milliseconds is
taken over (``XAUTOCLAIM``) by any live worker and run again; that delivery counts as a new attempt. A live worker
refreshes its in-flight jobs every ``claim_idle_ms / 3`` while the model runs, so a slow batch is not stolen: only
a worker that died (SIGKILL, OOM, power loss) or hung without its event loop loses its jobs.

**Dead-lettered after.** A failed attempt counts against a job only when it is the job's own: the model raised on
it alone, or its worker died while running it alone (jobs taken back from a dead worker are run alone, so a
process-killing image is found without costing its batch-mates an attempt). Failures are counted in Redis by the
workers, never in a field a client writes. When the model raises on a job, the job stays pending and is reclaimed
after a doubling back-off (``retry_backoff_ms``; a batch that raises is first split so that one bad image cannot
fail the others); a job that failed on its ``max_attempts``-th attempt, or whose worker died on it
``max_attempts`` times, is moved to the dead-letter stream ``<stream>:dead`` with the reason, and the requester
gets ``CaptionResult(ok=False, error=DEAD_LETTER)``. An image the model refuses (``ImageRejected``) is not a
failure: it is answered at once with its error code and never retried.

**Checked.** Every job field is validated against the job schema and its bounds (``CaptionJob.from_fields``):
an unknown or missing format version, a beam size out of range, a ``reply_to`` that is not a result stream, an
image over ``max_image_bytes``, a context over 4 KiB: the job is dead-lettered with the reason, never run, and
its requester is told when its job id and ``reply_to`` are valid.

**Busy.** Each job stream is bounded: when it holds ``queue_maxlen`` jobs (waiting or in progress) a new job is
refused at once with ``BUSY`` and the stream does not grow. The check and the add are one atomic step.

**Commands first.** There are two job streams (lanes, ``RedisKeys.lanes``): ``<stream>:high`` for jobs a person
waits on, ``<stream>`` (the one stream from before) for automation. Workers read the high lane first, run a command
that arrives while a batch of automation runs beside that batch, and give both lanes every guarantee above; each
lane has its own ``queue_maxlen`` and byte budget, so automation never makes a command ``BUSY``.
"""

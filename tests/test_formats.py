"""Jobs and results survive the trip through Redis stream fields unchanged."""

import json

from captionbot.formats import CaptionJob, CaptionResult, ErrorCode, ImageRejected


def test_job_round_trip_keeps_bytes_and_options() -> None:
    job = CaptionJob(image=bytes(range(256)), reply_to="results:bot-1", beam_size=5, heatmap=True,
                     context={"channel": 1, "message": 2})
    back = CaptionJob.from_fields({k.encode(): v if isinstance(v, bytes) else v.encode()
                                   for k, v in job.to_fields().items()}, reply_prefix="results:")
    assert back == job


def test_result_round_trip_with_error_and_heatmap() -> None:
    res = CaptionResult(job_id="x", ok=False, error=ErrorCode.TRUNCATED, heatmap_png=b"\x89PNG", detail="eof")
    back = CaptionResult.from_fields(res.to_fields())
    assert back == res
    assert back.user_message == "That image looks truncated or corrupt."


def test_image_rejected_carries_a_user_message() -> None:
    err = ImageRejected(ErrorCode.TOO_MANY_PIXELS, "100000x100000")
    assert "too many pixels" in err.user_message


def test_result_round_trip_keeps_the_text_read_in_the_image() -> None:
    res = CaptionResult(job_id="t", ok=True, caption="a sign", text="NO PARKING LOADING ZONE ✓ “quoted” …")
    back = CaptionResult.from_fields({k.encode(): v if isinstance(v, bytes) else v.encode()
                                      for k, v in res.to_fields().items()})
    assert back == res


def test_a_result_from_a_worker_without_text_reading_reads_as_no_text() -> None:
    fields = CaptionResult(job_id="o", ok=True, caption="a dog").to_fields()
    meta = json.loads(fields["meta"])
    del meta["text"]  # what a worker from before text reading sends
    back = CaptionResult.from_fields({"v": fields["v"], "meta": json.dumps(meta)})
    assert back.ok and back.caption == "a dog" and back.text == ""

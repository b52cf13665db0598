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


def fields_of(job: CaptionJob) -> dict[bytes, bytes]:
    return {k.encode(): v if isinstance(v, bytes) else v.encode() for k, v in job.to_fields().items()}


def test_a_job_asking_for_variants_round_trips_and_one_without_asks_for_one() -> None:
    job = CaptionJob(image=b"\x89PNG", reply_to="results:bot-1", variants=3)
    assert CaptionJob.from_fields(fields_of(job), reply_prefix="results:") == job
    old = fields_of(CaptionJob(image=b"\x89PNG", reply_to="results:bot-1"))
    assert b"variants" not in old, "a job for one caption reads exactly as before variants existed"
    assert CaptionJob.from_fields(old, reply_prefix="results:").variants == 1


def test_a_job_asking_for_too_many_or_nonsense_variants_is_invalid() -> None:
    import pytest

    from captionbot.formats import JobInvalid

    for bad in (b"0", b"4", b"100", b"-1", b"two", b"", b"3" * 300):
        fields = {**fields_of(CaptionJob(image=b"\x89PNG", reply_to="results:bot-1")), b"variants": bad}
        with pytest.raises(JobInvalid, match=r"variants .* is not 1\.\.3") as caught:
            CaptionJob.from_fields(fields, reply_prefix="results:")
        assert caught.value.reply_to == "results:bot-1", "the asker can still be told"


def test_result_variants_round_trip_and_results_without_them_read_as_before() -> None:
    res = CaptionResult(job_id="v", ok=True, caption="A dog runs.", confidence=0.6,
                        variants=[("A dog runs.", 0.6), ("A brown dog jumps.", 0.4)])
    assert CaptionResult.from_fields(res.to_fields()) == res
    plain = CaptionResult(job_id="p", ok=True, caption="A dog runs.").to_fields()
    assert "variants" not in json.loads(plain["meta"]), "a bot from before variants can read it"
    assert CaptionResult.from_fields(plain).variants == []

"""Replies read as alt text: one sentence per image, numbered when there are several, errors in plain words."""

from __future__ import annotations

from captionbot.bot.replies import Outcome, caption_text, heatmap_files

from captionbot.formats import USER_MESSAGES, CaptionResult, ErrorCode


def ok(caption: str, png: bytes | None = None) -> Outcome:
    return Outcome("a.jpg", CaptionResult(job_id="j", ok=True, caption=caption, heatmap_png=png))


def test_one_image_reads_as_alt_text() -> None:
    assert caption_text([ok("a dog runs through the grass")]) == "Image description: A dog runs through the grass."


def test_several_images_are_numbered_and_failures_explained() -> None:
    text = caption_text([ok("two children play"), Outcome("b.png", error=ErrorCode.TRUNCATED),
                         Outcome("c.png", CaptionResult(job_id="k", ok=False, error=ErrorCode.BUSY))])
    assert text.splitlines() == [
        "Image descriptions:", "1. Two children play.", f"2. (not captioned) {USER_MESSAGES[ErrorCode.TRUNCATED]}",
        f"3. (not captioned) {USER_MESSAGES[ErrorCode.BUSY]}"]


def test_a_lone_failure_is_just_the_message() -> None:
    assert caption_text([Outcome("x", error=ErrorCode.TOO_LARGE)]) == USER_MESSAGES[ErrorCode.TOO_LARGE]


def test_heatmaps_become_named_pngs_with_their_own_alt_text() -> None:
    files = heatmap_files([ok("a cat", b"\x89PNG1"), ok("a dog"), ok("a bird", b"\x89PNG3")])
    assert [f.filename for f in files] == ["heatmap-1.png", "heatmap-3.png"]
    assert files[0].description == "Attention heatmap: A cat."


def test_text_read_in_the_image_follows_the_description_verbatim() -> None:
    meme = Outcome("m.jpg", CaptionResult(job_id="m", ok=True, caption="a dog on a beach",
                                          text="WHEN THE CODE COMPILES ON THE FIRST TRY"))
    assert caption_text([meme]) == ("Image description: A dog on a beach.\n"
                                    "Text in image: WHEN THE CODE COMPILES ON THE FIRST TRY")
    lines = caption_text([ok("two children play"), meme]).splitlines()
    assert lines[1] == "1. Two children play."
    assert lines[2] == "2. A dog on a beach. Text in image: WHEN THE CODE COMPILES ON THE FIRST TRY"


def test_text_in_the_image_cannot_format_the_reply_or_overflow_it() -> None:
    code = Outcome("c.png", CaptionResult(job_id="c", ok=True, caption="a screen",
                                          text="print(**kwargs) __init__ `x` " + "word " * 600))
    text = caption_text([code])
    assert "Text in image: print(\\*\\*kwargs) \\_\\_init\\_\\_ \\`x\\`" in text
    assert len(text) <= 2000

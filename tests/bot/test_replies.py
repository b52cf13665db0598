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


def test_heatmap_alt_text_says_where_each_content_word_was_found() -> None:
    import numpy as np
    from captionbot.inference.heatmap import render_heatmap
    from PIL import Image

    flat, lower_left, centre = np.full(49, 1 / 49), np.eye(49)[6 * 7], np.eye(49)[3 * 7 + 3]
    png = render_heatmap(Image.new("RGB", (224, 224), (120, 90, 60)), ["a", "dog", "with", "a", "ball"],
                         np.stack([flat, lower_left, flat, flat, centre]), (7, 7))
    [file] = heatmap_files([ok("a dog with a ball", png)])
    assert file.description == ("Attention heatmap: A dog with a ball. Where the model looked: dog: lower left; "
                                "ball: centre.")


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


def test_a_channels_length_choice_shapes_the_description() -> None:
    read = Outcome("a.jpg", CaptionResult(job_id="j", ok=True, text="OPEN 24 HOURS",
                                          caption="a man in a red jacket is standing in front of a shop window"))
    assert caption_text([read]) == ("Image description: A man in a red jacket is standing in front of a shop window."
                                    "\nText in image: OPEN 24 HOURS")
    assert caption_text([read], "model") == (
        "Image description: A man in a red jacket is standing in front of a shop window.")
    assert caption_text([read], "short") == "Image description: A man in a red jacket is standing…"
    assert caption_text([read, ok("a dog")], "short").splitlines()[1:] == ["1. A man in a red jacket is standing…",
                                                                           "2. A dog."]

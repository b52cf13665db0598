"""`captionbot caption IMG… [--beam K] [--heatmap OUT.png] [--json] [--bundle DIR]` as a user runs it."""

from __future__ import annotations

import json

from captionbot.export.tiny import synthetic_images
from PIL import Image

from captionbot.cli import main


def test_caption_files_with_json_and_heatmaps(caption_bundle, tmp_path, capsys):
    photos = []
    for i, data in enumerate(synthetic_images(2)):
        photos.append(tmp_path / f"photo{i}.png")
        photos[-1].write_bytes(data)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    rc = main(["caption", *map(str, photos), str(notes), "--bundle", str(caption_bundle), "--beam", "2", "--json",
               "--heatmap", str(tmp_path / "att.png")])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rc == 1  # one file could not be captioned
    assert [rec["image"] for rec in lines] == [*map(str, photos), str(notes)]
    assert lines[2]["error"] == "not_an_image" and lines[2]["message"]
    for i, rec in enumerate(lines[:2]):
        assert rec["caption"] and rec["words"] and rec["model_version"]
        assert rec["heatmap"] == str(tmp_path / f"att-{i + 1}.png")
        assert Image.open(rec["heatmap"]).format == "PNG"


def test_caption_one_file_plain(caption_bundle, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    photo.write_bytes(synthetic_images(1)[0])
    assert main(["caption", str(photo), "--bundle", str(caption_bundle)]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith(f"{photo}: ") and out.endswith(".")


def test_a_missing_bundle_is_a_clear_error(tmp_path, capsys):
    photo = tmp_path / "photo.png"
    photo.write_bytes(synthetic_images(1)[0])
    assert main(["caption", str(photo), "--bundle", str(tmp_path / "none")]) == 2
    assert "cannot load the model bundle" in capsys.readouterr().out


def test_a_pipe_a_device_a_large_file_or_a_missing_path_fails_alone(caption_bundle, tmp_path):
    """Each bad path gets its own error line at once; the images among them are still captioned; exit 1."""
    import os
    import subprocess
    import sys

    good = [tmp_path / "a.png", tmp_path / "b.png"]
    for path, data in zip(good, synthetic_images(2), strict=True):
        path.write_bytes(data)
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # nobody ever writes to it: reading it would hang
    big = tmp_path / "big.png"
    big.write_bytes(synthetic_images(1)[0] + b"\0" * 5000)
    paths = [good[0], tmp_path / "missing.png", fifo, "/dev/zero", big, good[1]]
    env = dict(os.environ, CAPTIONBOT_MAX_IMAGE_BYTES="4000", CAPTIONBOT_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "captionbot.cli", "caption", *map(str, paths), "--json",
                           "--bundle", str(caption_bundle)], env=env, capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert [rec["image"] for rec in lines] == list(map(str, paths))
    assert lines[0]["caption"] and lines[5]["caption"]
    assert "No such file" in lines[1]["message"]
    assert lines[2]["message"] == lines[3]["message"] == "not a regular file"
    assert "over the 4000-byte limit" in lines[4]["message"]


def test_variants_print_up_to_n_different_captions_with_their_confidence(caption_bundle, data_dir, capsys):
    import re

    import pytest

    photo = sorted((data_dir / "flickr8k" / "images").glob("*.jpg"))[1]
    assert main(["caption", str(photo), "--bundle", str(caption_bundle), "--variants", "3"]) == 0
    first, *rest = capsys.readouterr().out.splitlines()
    assert first.startswith(f"{photo}: ")
    assert 2 <= len(rest) <= 3
    found = [re.fullmatch(r"  (\d)\. (.+\.) \(confidence (0\.\d\d|1\.00)\)", line) for line in rest]
    assert all(found), rest
    assert [m.group(1) for m in found if m] == [str(n) for n in range(1, len(rest) + 1)]
    captions = [m.group(2) for m in found if m]
    assert captions[0] == first.removeprefix(f"{photo}: ") and len(set(captions)) == len(captions)

    assert main(["caption", str(photo), "--bundle", str(caption_bundle), "--variants", "2", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["variants"][0] == {"caption": record["caption"], "confidence": round(record["confidence"], 3)}
    assert len(record["variants"]) == 2

    with pytest.raises(SystemExit) as bad:
        main(["caption", str(photo), "--bundle", str(caption_bundle), "--variants", "4"])
    assert bad.value.code == 2
    assert "must be a whole number 1-3, not '4'" in capsys.readouterr().err

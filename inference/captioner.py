"""Image bytes in, captions out: decode -> encoder on the whole batch -> decoder init -> batched beam search ->
heatmaps. Torch-free; one bad image never fails the batch (it comes back as :class:`ImageRejected` in its place).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from captionbot.inference.beam_search import BeamOptions, Hypothesis, beam_search, beam_search_variants
from captionbot.inference.blank import describe_blank
from captionbot.inference.bundle import Bundle, load_bundle
from captionbot.inference.chart import CHART_CONFIDENCE, Palette, describe_chart, is_flat_graphic, palette
from captionbot.inference.described import describe_arrays
from captionbot.inference.heatmap import render_heatmap
from captionbot.inference.policy import beam_options, bundle_policy
from captionbot.inference.preprocess import DEFAULT_MAX_PIXELS, decode_image, to_array
from captionbot.inference.variants import variant_options
from PIL import Image

from captionbot.formats import ErrorCode, ImageRejected, SpecialIds

if TYPE_CHECKING:
    from captionbot.inference.text_reader import TextReader

log = logging.getLogger(__name__)

# Images per encoder call. Small chunks keep each convolution's activations in the CPU caches: on this 2-core
# CPU the shipped encoder ran at 125 img/s in chunks of 8 vs 110 in chunks of 32 (1 thread), 195 vs 184
# (2 threads); `bench/encoder_chunks.py`. Chunks of 1-16 are within noise of each other.
ENCODER_CHUNK = 8
# a drawn image (flat background, few colours) with at least this many words of text read is described as text
GRAPHIC_TEXT_WORDS = 3
GRAPHIC_WITH_TEXT = "An image with text."


@dataclass
class CaptionOutput:
    caption: str
    words: list[str]
    score: float  # mean log-probability per token (<end> included): closer to 0 is more confident
    alphas: np.ndarray  # [T, P]: attention over the feature grid for each of the T words
    heatmap_png: bytes | None = None
    text: str = ""  # text read in the image (TextReader), "" when none was found or reading is off
    confidence: float = 1.0  # 0-1: estimated chance the caption is right (inference/confidence.py)
    labels: list[tuple[str, float]] = field(default_factory=list)  # top object words and their probabilities
    # up to ``variants`` different captions, each (sentence, confidence), this caption first (inference/variants.py)
    variants: list[tuple[str, float]] = field(default_factory=list)


def caption_arrays(bundle: Bundle, images: np.ndarray, options: BeamOptions) -> list[Hypothesis]:
    """Preprocessed images [B,3,H,W] -> the best hypothesis per image (one batched beam search)."""
    feats = np.concatenate([bundle.encode(images[i : i + ENCODER_CHUNK]) for i in range(0, len(images), ENCODER_CHUNK)])
    return caption_features(bundle, feats, options)


def caption_features(bundle: Bundle, feats: np.ndarray, options: BeamOptions) -> list[Hypothesis]:
    """Encoded images [B,P,C] -> the best hypothesis per image (decoder init, then one batched beam search; with
    I/O binding where the bundle has a device, ``inference/device.py``)."""
    if bundle.device is not None:
        from captionbot.inference.device import bound_caption_features

        return bound_caption_features(bundle, bundle.device, feats, options)
    features, h, c, att_proj = bundle.search_inputs(feats)
    return beam_search(bundle.step, features, h, c, att_proj, options, SpecialIds.of(bundle.itos))


def caption_feature_variants(bundle: Bundle, feats: np.ndarray, options: BeamOptions) -> list[list[Hypothesis]]:
    """Encoded images [B,P,C] -> up to ``options.groups`` different hypotheses per image (diverse beam search),
    the one :func:`caption_features` gives first. One caption per image goes through :func:`caption_features`
    (with I/O binding where the bundle has a device); several run the plain search."""
    if options.groups == 1:
        return [[hyp] for hyp in caption_features(bundle, feats, options)]
    features, h, c, att_proj = bundle.search_inputs(feats)
    return beam_search_variants(bundle.step, features, h, c, att_proj, options, SpecialIds.of(bundle.itos))


def as_sentence(words: list[str]) -> str:
    """["a", "dog", "runs"] -> "A dog runs." (what a reader expects of alt text)."""
    text = " ".join(words)
    return f"{text[:1].upper()}{text[1:]}." if text else ""


def served_options(bundle: Bundle, beam_size: int | None = None) -> BeamOptions:
    """The decoding rules users get: the bundle's decoding policy (``inference/policy.py``), at ``beam_size``
    (None: the policy's). README reports scores under these and the evaluated rules (``--as-served``)."""
    policy = bundle_policy(bundle.manifest, bundle.itos)
    return beam_options(policy, bundle.itos, bundle.manifest.decoder.max_len, beam_size)


class Captioner:
    """A loaded bundle plus decoding options. Thread-compatible, not thread-safe: one caller at a time."""

    def __init__(self, bundle: Bundle, options: BeamOptions | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 decode_threads: int = 1, text_reader: TextReader | None = None, label_led_text: bool = True):
        self.bundle = bundle
        self.text_reader = text_reader  # None: loaded on first need, if ``label_led_text``
        self._gate_all = text_reader is not None  # every image passes the text gate, not only where labels say so
        self._label_led_text = label_led_text  # read text where the object labels say it is likely
        self._text_pool: ThreadPoolExecutor | None = None
        self.options = options or served_options(bundle)
        self.max_pixels = max_pixels
        self.labels = None  # the bundle's label table: bundles without one caption as before
        if bundle.has_labels:
            from captionbot.inference.labels import LabelTable

            self.labels = LabelTable.load(bundle.path / bundle.manifest.labels["file"])
        enc = bundle.manifest.encoder
        self.input_size, self.mean, self.std, self.grid = enc.input_size, enc.mean, enc.std, enc.grid
        # Pillow releases the GIL while it decodes and resizes, so a batch's images decode in parallel.
        self._pool = ThreadPoolExecutor(decode_threads, "decode") if decode_threads > 1 else None

    @classmethod
    def load(
        cls, bundle_dir: Path | None = None, variant: str = "fp32", provider: str = "auto", threads: int = 0,
        read_text: bool | None = None, io_binding: bool | None = None, allow_unsealed: bool | None = None,
    ) -> Captioner:
        """Open a bundle (``None``: the default model, ``captionbot.settings.DEFAULT_BUNDLE``). Images are decoded
        on as many threads as onnxruntime computes on (``threads``; 0: one per CPU). Text in images
        (``captionbot.inference.text_reader``) is read where the object labels say it is likely (``read_text``
        None), in every image the text gate passes (True), or never (False). ``allow_unsealed``: see
        :func:`~captionbot.inference.bundle.load_bundle`."""
        if bundle_dir is None:
            from captionbot.settings import DEFAULT_BUNDLE

            bundle_dir = DEFAULT_BUNDLE
        bundle = load_bundle(Path(bundle_dir), variant=variant, provider=provider, threads=threads,
                             io_binding=io_binding, allow_unsealed=allow_unsealed)
        reader = None
        if read_text:
            from captionbot.inference.text_reader import TextReader

            reader = TextReader()
        return cls(bundle, decode_threads=threads or os.cpu_count() or 1, text_reader=reader,
                   label_led_text=read_text is not False)

    @property
    def model_version(self) -> str:
        return self.bundle.model_version

    def preprocess(self, data: bytes) -> tuple[Image.Image, np.ndarray]:
        img = decode_image(data, size=self.input_size, max_pixels=self.max_pixels)
        return img, to_array(img, self.input_size, self.mean, self.std)

    def preprocess_many(self, images: Sequence[bytes]) -> list[tuple[Image.Image, np.ndarray] | ImageRejected]:
        """:meth:`preprocess` for each image, on the decode threads; a refused image gives its ``ImageRejected``."""
        jobs = list(enumerate(images))
        if self._pool and len(jobs) > 1:
            return list(self._pool.map(self._try_preprocess, jobs))
        return [self._try_preprocess(job) for job in jobs]

    def _try_preprocess(self, job: tuple[int, bytes]) -> tuple[Image.Image, np.ndarray] | ImageRejected:
        i, data = job
        try:
            return self.preprocess(data)
        except ImageRejected as exc:
            log.info("image %d refused: %s", i, exc)
            return exc
        except Exception as exc:  # a decoder bug on one odd file must not cost the rest of the batch
            log.exception("image %d: unexpected error while decoding", i)
            return ImageRejected(ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    def caption_images(
        self, images: Sequence[bytes], beam_size: int | None = None, heatmap: bool = False, variants: int = 1
    ) -> list[CaptionOutput | ImageRejected]:
        """Caption each image (``beam_size`` None: the options' own); a refused image is returned (not raised) as
        :class:`ImageRejected` in its place. ``variants`` > 1: each output's ``variants`` holds up to that many
        different captions with their confidences (diverse beam search, ``inference/variants.py``)."""
        results: list[CaptionOutput | ImageRejected | None] = [None] * len(images)
        decoded: list[tuple[int, Image.Image, np.ndarray]] = []
        for i, out in enumerate(self.preprocess_many(images)):
            if isinstance(out, ImageRejected):
                results[i] = out
            else:
                decoded.append((i, *out))
        colours: dict[int, Palette] = {}  # each image's palette, shared by the chart and graphic checks
        for i, img, _ in decoded:  # nothing in the picture: say so, never the model's guess
            if text := describe_blank(img):
                results[i] = self._fixed_description(img, text, heatmap, "", 1.0)
            elif text := describe_chart(img, colours.setdefault(i, palette(img))):  # a drawn chart: say so, and
                # read its title, labels and values
                read = self._read_where_labels_say(images[i], img, document=True) if self._label_led_text else ""
                results[i] = self._fixed_description(img, text, heatmap, read, CHART_CONFIDENCE)
        decoded = [d for d in decoded if results[d[0]] is None]
        if decoded:
            readings = [self._start_reading(images[i], img) for i, img, _ in decoded]
            batch = np.stack([arr for _, _, arr in decoded])
            options = variant_options(replace(self.options, beam_size=beam_size or self.options.beam_size), variants)
            if self.labels is None:
                feats = np.concatenate([self.bundle.encode(batch[i: i + ENCODER_CHUNK])
                                        for i in range(0, len(batch), ENCODER_CHUNK)])
                found = caption_feature_variants(self.bundle, feats, options)
                for (i, img, _), hyps, reading in zip(decoded, found, readings, strict=True):
                    hyp = hyps[0]
                    words = [self.bundle.itos[t] for t in hyp.tokens]
                    png = render_heatmap(img, words, hyp.alphas, self.grid) if heatmap else None
                    found_out = CaptionOutput(as_sentence(words), words, hyp.score(1.0), hyp.alphas, png,
                                              reading.result() if reading else "")
                    if variants > 1:  # no label head, no confidence model: 1.0, as for the caption itself
                        found_out.variants = [(as_sentence([self.bundle.itos[t] for t in h.tokens]), 1.0)
                                              for h in hyps]
                    results[i] = found_out
            else:
                described = describe_arrays(self.bundle, self.labels, batch, options)
                for (i, img, _), d, reading in zip(decoded, described, readings, strict=True):
                    text = reading.result() if reading else ""
                    # a drawn image the labels did not call a document (a dark-mode chat, a slide): read as one;
                    # photos are never drawn images (0 of the 1,107 dev photos), so they pay nothing
                    graphic = not d.document and is_flat_graphic(img, colours.get(i))
                    if self._label_led_text and not text and (
                            d.document or graphic or (d.text_likely and not self._gate_all)):
                        text = self._read_where_labels_say(images[i], img, document=d.document or graphic)
                    if graphic and len(text.split()) >= GRAPHIC_TEXT_WORDS:  # not a photo: never the model's guess
                        results[i] = self._fixed_description(img, GRAPHIC_WITH_TEXT, heatmap, text,
                                                             CHART_CONFIDENCE, d.labels)
                        continue
                    png = render_heatmap(img, d.words, d.alphas, self.grid) if heatmap else None
                    described_out = CaptionOutput(d.caption, d.words, d.score, d.alphas, png, text, d.confidence,
                                                  d.labels)
                    if variants > 1:
                        described_out.variants = [(d.caption, d.confidence), *d.alternatives][:variants]
                    results[i] = described_out
        filled = [out for out in results if out is not None]
        assert len(filled) == len(images), "every slot is filled above"
        return filled

    def _fixed_description(self, img: Image.Image, sentence: str, heatmap: bool, text: str, confidence: float,
                           labels: list[tuple[str, float]] | None = None) -> CaptionOutput:
        """A description that is not the model's caption (a blank image, a chart, a graphic with text): its words
        with uniform attention, since no word was looked for anywhere in particular."""
        words = sentence.rstrip(".").lower().split()
        alphas = np.full((len(words), self.grid[0] * self.grid[1]), 1.0 / (self.grid[0] * self.grid[1]))
        png = render_heatmap(img, words, alphas, self.grid) if heatmap else None
        return CaptionOutput(sentence, words, 0.0, alphas, png, text, confidence, labels or [])

    def _read_where_labels_say(self, data: bytes, img: Image.Image, *, document: bool) -> str:
        """Text reading led by the labels, whether or not every image is gated (``read_text``): an image the
        labels call a document (screenshot, menu, page) is read at once; one where they say text is likely (a
        sign, a book, ...) goes through the text detector's gate first. Photos almost never get here, so they pay
        nothing (docs/inference.md, "Text in images"). "" when no text reader can be loaded (optional packages)."""
        if self.text_reader is None:
            try:
                from captionbot.inference.text_reader import TextReader

                self.text_reader = TextReader()
            except ImportError as exc:
                log.warning("cannot read the text in an image: %s", exc)
                return ""
        if not document:
            return self.text_reader.read_if_likely(data, img)
        try:
            return self.text_reader.read(data)
        except Exception:  # reading text is an extra: a failure here must not cost the caption
            log.exception("reading the text of a document image failed")
            return ""

    def _start_reading(self, data: bytes, img: Image.Image) -> Future[str] | None:
        """Read the image's text on a thread of its own while the batch is captioned: the beam search leaves a
        core mostly idle, so most of the text gate's cost hides there (``bench/text_reading.py``)."""
        if self.text_reader is None or not self._gate_all:
            return None
        if self._text_pool is None:
            self._text_pool = ThreadPoolExecutor(1, "text")
        return self._text_pool.submit(self.text_reader.read_if_likely, data, img)

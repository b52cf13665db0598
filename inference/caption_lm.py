"""The bundle's caption language model (``caption_lm.npz``, manifest ``lm``): an interpolated Kneser-Ney word
trigram over the decoder's own vocabulary, built from caption text only (``export/caption_lm.py``). The runtime
asks it for the next word's log-probabilities of many hypotheses at once (:meth:`CaptionLM.next_log_probs`) and
the beam search adds ``weight`` × those to the decoder's (shallow fusion, ``inference/beam_search.py``).

File layout (numpy ``.npz``; ids are vocabulary ids, the context of the first word is ``<start> <start>``):
- ``unigram`` [V] float32: the lowest order (continuation probabilities, smoothed so none is 0);
- ``bi_gamma`` [V] float32: back-off mass of each one-word context; ``bi_offsets`` [V+1] int64, ``bi_words``
  int16, ``bi_probs`` float16: the discounted bigram probabilities of context ``v`` in ``[offsets[v],
  offsets[v+1])``;
- ``tri_keys`` [K] int64 sorted (``u * V + v``), ``tri_gamma`` [K] float32, ``tri_offsets`` [K+1] int64,
  ``tri_words`` int16, ``tri_probs`` float16: the same for two-word contexts (contexts not stored back off
  entirely).
p(w | u v) = tri(u v, w) + gamma(u v) · (bi(v, w) + gamma(v) · unigram(w)).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from captionbot.formats import BundleError

CACHE_ROWS = 4096  # two-word contexts kept (10 KiB each), cleared when full

ARRAYS = ("unigram", "bi_gamma", "bi_offsets", "bi_words", "bi_probs", "tri_keys", "tri_gamma", "tri_offsets",
          "tri_words", "tri_probs")


@dataclass
class CaptionLM:
    """A loaded trigram table; ``V`` is the decoder's vocabulary size."""

    unigram: np.ndarray
    bi_gamma: np.ndarray
    bi_offsets: np.ndarray
    bi_words: np.ndarray
    bi_probs: np.ndarray
    tri_keys: np.ndarray
    tri_gamma: np.ndarray
    tri_offsets: np.ndarray
    tri_words: np.ndarray
    tri_probs: np.ndarray
    start: int = 1  # the id of <start>, the context before a caption's first word
    _cache: dict[tuple[int, int], np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    @property
    def V(self) -> int:
        return len(self.unigram)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], vocab_size: int, start: int = 1) -> CaptionLM:
        """The tables (:data:`ARRAYS`), checked (:class:`BundleError` if they do not fit ``vocab_size``)."""
        missing = [k for k in ARRAYS if k not in arrays]
        if missing:
            raise BundleError(f"caption language model lacks {missing}")
        a = arrays
        lm = cls(a["unigram"], a["bi_gamma"], a["bi_offsets"], a["bi_words"], a["bi_probs"], a["tri_keys"],
                 a["tri_gamma"], a["tri_offsets"], a["tri_words"], a["tri_probs"], start=start)
        lm.check(vocab_size)
        return lm

    def check(self, vocab_size: int) -> None:
        """Raise :class:`BundleError` unless the tables are consistent with each other and the vocabulary."""
        V = vocab_size
        problems = []
        if self.unigram.shape != (V,):
            problems.append(f"unigram has {self.unigram.shape}, the vocabulary {V} words")
        if self.bi_gamma.shape != (V,) or self.bi_offsets.shape != (V + 1,):
            problems.append("bigram contexts do not match the vocabulary")
        for name, offsets, words, probs in (("bi", self.bi_offsets, self.bi_words, self.bi_probs),
                                            ("tri", self.tri_offsets, self.tri_words, self.tri_probs)):
            if len(words) != len(probs) or offsets[-1] != len(words) or np.any(np.diff(offsets) < 0):
                problems.append(f"{name}gram offsets do not match its entries")
            elif len(words) and (words.min() < 0 or words.max() >= V):
                problems.append(f"{name}gram names words outside the vocabulary")
        if len(self.tri_keys) + 1 != len(self.tri_offsets) or len(self.tri_gamma) != len(self.tri_keys):
            problems.append("trigram contexts do not match their offsets")
        elif np.any(np.diff(self.tri_keys) <= 0):
            problems.append("trigram contexts are not sorted")
        if not np.all(np.isfinite(self.unigram)) or np.any(self.unigram <= 0):
            problems.append("unigram probabilities must be positive")
        if problems:
            raise BundleError("caption language model: " + "; ".join(problems))

    def next_log_probs(self, tokens: Sequence[Sequence[int]]) -> np.ndarray:
        """Word ids so far (without ``<start>``), one row per hypothesis -> log p(next word) [N, V] float32. Rows
        of a beam share contexts, so each two-word context's row is computed once and kept (``_cache``)."""
        out = np.empty((len(tokens), self.V), dtype=np.float32)
        todo: dict[tuple[int, int], list[int]] = {}
        for i, t in enumerate(tokens):
            ctx = (int(t[-2]) if len(t) >= 2 else self.start, int(t[-1]) if len(t) else self.start)
            row = self._cache.get(ctx)
            if row is None:
                todo.setdefault(ctx, []).append(i)
            else:
                out[i] = row
        if todo:
            ctxs = list(todo)
            rows = self._compute([[u, v] for u, v in ctxs]).astype(np.float32)
            if len(self._cache) + len(ctxs) > CACHE_ROWS:
                self._cache.clear()
            for ctx, row in zip(ctxs, rows, strict=True):
                self._cache[ctx] = row
                out[todo[ctx]] = row
        return out

    def _compute(self, tokens: list[list[int]]) -> np.ndarray:
        """log p(next word) [N, V] float64 for each row's last two words, from the tables."""
        rows = tokens
        N, V = len(rows), self.V
        v = np.array([r[-1] if r else self.start for r in rows], dtype=np.int64)
        u = np.array([r[-2] if len(r) >= 2 else self.start for r in rows], dtype=np.int64)
        key = u * V + v
        pos = np.searchsorted(self.tri_keys, key)
        pos_c = np.minimum(pos, max(len(self.tri_keys) - 1, 0))
        found = (pos < len(self.tri_keys)) & (self.tri_keys[pos_c] == key) if len(self.tri_keys) else np.zeros(N, bool)
        g3 = np.where(found, self.tri_gamma[pos_c] if len(self.tri_keys) else 1.0, 1.0)
        out = (g3 * self.bi_gamma[v])[:, None] * self.unigram[None, :].astype(np.float64)
        self._scatter(out, np.arange(N), v, self.bi_offsets, self.bi_words, self.bi_probs, g3)
        rows_t = np.flatnonzero(found)
        self._scatter(out, rows_t, pos_c[rows_t], self.tri_offsets, self.tri_words, self.tri_probs,
                      np.ones(len(rows_t)))
        return np.log(np.maximum(out, 1e-12))

    @staticmethod
    def _scatter(out: np.ndarray, rows: np.ndarray, ctx: np.ndarray, offsets: np.ndarray, words: np.ndarray,
                 probs: np.ndarray, scale: np.ndarray) -> None:
        """out[row, w] += scale[row] * p(w | ctx) for every stored entry of each row's context."""
        if len(rows) == 0:
            return
        lo, hi = offsets[ctx], offsets[ctx + 1]
        n = hi - lo
        if n.sum() == 0:
            return
        r = np.repeat(np.arange(len(rows)), n)
        idx = np.repeat(lo - np.cumsum(n) + n, n) + np.arange(n.sum())
        out[rows[r], words[idx].astype(np.int64)] += scale[r] * probs[idx].astype(np.float64)

    def sentence_log_prob(self, words: list[int], end: int) -> float:  # pragma: no cover - a tool for people
        """log p of a whole caption (its ``<end>`` included): for tests and rescoring."""
        total = 0.0
        for i, w in enumerate([*words, end]):
            total += float(self.next_log_probs([words[:i]])[0, w])
        return total


@dataclass
class DomainRatio:
    """Two caption LMs over one vocabulary: ``target`` learnt from how people describe everyday photos (COCO
    captions, text only), ``source`` from the captions the decoder was trained on (Flickr8k train). Their
    log-ratio is what fusion adds (the density-ratio method, McDermott et al. 2019): it moves the decoder's
    phrasing towards the target domain without counting twice what the decoder already learnt from the source."""

    target: CaptionLM
    source: CaptionLM

    @classmethod
    def load(cls, path: Path, vocab_size: int, start: int = 1) -> DomainRatio:
        """Read and check ``path`` (``target_*`` and ``source_*`` tables; :class:`BundleError` if bad)."""
        try:
            with np.load(io.BytesIO(Path(path).read_bytes()), allow_pickle=False) as z:
                tables = {side: {k: z[f"{side}_{k}"] for k in ARRAYS} for side in ("target", "source")}
        except (OSError, KeyError, ValueError, EOFError) as exc:
            raise BundleError(f"{path}: not a caption language model file ({exc})") from exc
        return cls(CaptionLM.from_arrays(tables["target"], vocab_size, start),
                   CaptionLM.from_arrays(tables["source"], vocab_size, start))

    def next_log_ratio(self, tokens: Sequence[Sequence[int]], images: np.ndarray | None = None) -> np.ndarray:
        """log p_target(next) - log p_source(next) [N, V] for each row's words so far (an ``LmFn``)."""
        return self.target.next_log_probs(tokens) - self.source.next_log_probs(tokens)

"""Self-critical sequence training (Rennie et al., 2017): fine-tune a cross-entropy model on CIDEr directly.

Why: cross-entropy teaches the decoder to predict the next reference word given the *reference* prefix, but users
get captions decoded from the model's *own* prefixes and judged as whole sentences. SCST samples whole captions,
scores each with CIDEr-D against the image's references, and raises the log-probability of captions that beat the
image's other samples (the baseline is the mean reward of the other samples, Luo 2020), lowering the rest. It is
the standard final stage of captioning systems and the largest single gain in CIDEr after cross-entropy.

The reward uses document frequencies from the whole training corpus (:class:`CorpusCider`). pycocoevalcap's
``Cider`` takes them from the scored set itself, which for one batch of 32 images would make every n-gram rare;
our scorer reuses pycocoevalcap's n-gram counting and reproduces its scores exactly when given the same corpus
(tested).
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from captionbot.training.checkpoint import load_checkpoint, save_checkpoint
from captionbot.training.data import END, PAD, START, UNK, CaptionedImage, Vocab, tokenize
from captionbot.training.evaluate import generate_captions
from captionbot.training.features import FeatureCache
from captionbot.training.metrics import score_captions
from captionbot.training.model import Captioner, Decoder, DecoderConfig
from pycocoevalcap.cider.cider_scorer import precook
from tqdm import tqdm

log = logging.getLogger(__name__)


class CorpusCider:
    """CIDEr-D (as pycocoevalcap computes it: n = 1..4, clipped tf-idf cosine, Gaussian length penalty with
    sigma 6, x10) with document frequencies counted once over ``corpus`` (a list of reference lists)."""

    def __init__(self, corpus: list[list[str]], n: int = 4, sigma: float = 6.0) -> None:
        self.n, self.sigma = n, sigma
        self.df: Counter = Counter()
        for refs in corpus:
            self.df.update({ngram for ref in refs for ngram in precook(ref, n)})
        self.log_docs = math.log(float(len(corpus)))
        self._ref_cache: dict[tuple[str, ...], list] = {}

    def _vec(self, counts: dict) -> tuple[list[dict], list[float], int]:
        vec: list[dict] = [{} for _ in range(self.n)]
        norm = [0.0] * self.n
        length = 0
        for ngram, tf in counts.items():
            k = len(ngram) - 1
            w = float(tf) * (self.log_docs - math.log(max(1.0, self.df.get(ngram, 0.0))))
            vec[k][ngram] = w
            norm[k] += w * w
            if k == 1:  # pycocoevalcap counts the length this way (bigram count); kept for identical scores
                length += tf
        return vec, [math.sqrt(x) for x in norm], length

    def score(self, hyp: str, refs: list[str]) -> float:
        key = tuple(refs)
        ref_vecs = self._ref_cache.get(key)
        if ref_vecs is None:
            ref_vecs = self._ref_cache[key] = [self._vec(precook(r, self.n)) for r in refs]
        vec, norm, length = self._vec(precook(hyp, self.n))
        total = np.zeros(self.n)
        for vec_r, norm_r, length_r in ref_vecs:
            penalty = math.exp(-((length - length_r) ** 2) / (2 * self.sigma**2))
            for k in range(self.n):
                val = sum(min(w, vec_r[k].get(g, 0.0)) * vec_r[k].get(g, 0.0) for g, w in vec[k].items())
                if norm[k] and norm_r[k]:
                    val /= norm[k] * norm_r[k]
                total[k] += val * penalty
        return float(total.mean() / len(refs) * 10.0)


def sample_captions(decoder: Decoder, features: torch.Tensor, k: int, max_len: int,
                    repeatable: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` sampled captions per image: token ids [B*k, T] (0 after <end>) and their summed log-probs [B*k].

    With ``repeatable`` (bool [V]: words that may occur twice), samples follow the served rules: no word twice in a
    row and no other word twice at all, so the model is never rewarded for repetitions that serving forbids."""
    feats = features.repeat_interleave(k, dim=0)
    h, c, att_proj = decoder.init_state(feats)
    word = torch.full((feats.size(0),), START, dtype=torch.long)
    alive = torch.ones(feats.size(0), dtype=torch.bool)
    forbidden = torch.zeros(decoder.cfg.vocab_size, dtype=torch.bool)
    forbidden[[PAD, START, UNK]] = True  # never <unk>: users should never see it
    tokens, log_probs = [], []
    used = torch.zeros(feats.size(0), decoder.cfg.vocab_size, dtype=torch.bool)
    for _ in range(max_len + 1):
        lp, h, c, _ = decoder.step(word, h, c, feats, att_proj)
        ban = forbidden.expand_as(used)
        if repeatable is not None:
            ban = ban | (used & ~repeatable)
            ban = ban.scatter(1, word[:, None], True) if tokens else ban
        lp = lp.masked_fill(ban, float("-inf")).log_softmax(dim=1)
        word = torch.multinomial(lp.detach().exp(), 1).squeeze(1)
        log_probs.append(lp.gather(1, word[:, None]).squeeze(1) * alive)
        tokens.append(word * alive)
        used[torch.arange(word.size(0)), word] = True
        alive = alive & (word != END)
        if not alive.any():
            break
    return torch.stack(tokens, 1), torch.stack(log_probs, 1).sum(1)


@dataclass
class SelfCriticalConfig:
    epochs: int = 2
    lr: float = 2e-5
    batch_images: int = 32
    samples: int = 5
    beam: int = 3  # validation beam
    seed: int = 0
    threads: int = 0
    grad_clip: float = 2.0
    served_rules: bool = True  # sample under the served no-repeat rules
    val_every: int = 0  # also validate every this many batches (0: at the end of each epoch only)
    val_limit: int | None = None  # validate on the first N validation images (None: all)


def self_critical(
    checkpoint: Path,
    train_images: list[CaptionedImage],
    val_images: list[CaptionedImage],
    cache: FeatureCache,
    out_dir: Path,
    cfg: SelfCriticalConfig,
) -> Path:
    """Fine-tune ``checkpoint`` with SCST; writes OUT/scst-epochN.pt and OUT/scst-best.pt (best dev CIDEr)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    base = load_checkpoint(checkpoint)
    vocab = Vocab.from_dict(base["vocab"])
    model = Captioner(DecoderConfig(**base["decoder_config"]), arch=base["encoder_arch"], pretrained=False)
    model.load_state_dict(base["model"])
    decoder = model.decoder
    max_len = decoder.cfg.max_len
    refs = {im.image_id: [" ".join(tokenize(c)) for c in im.captions] for im in train_images}
    scorer = CorpusCider(list(refs.values()))
    optimizer = torch.optim.AdamW([p for p in decoder.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=0.0)
    repeatable = None
    if cfg.served_rules:
        from captionbot.inference.captioner import REPEATABLE_WORDS

        repeatable = torch.tensor([w in REPEATABLE_WORDS for w in vocab.itos])
        repeatable[END] = True
    val_ids = [im.image_id for im in val_images][: cfg.val_limit]
    val_refs = {im.image_id: im.captions for im in val_images}

    def validate() -> float:
        captions = generate_captions(decoder, cache.get, val_ids, vocab, cfg.beam)
        return score_captions(val_refs, captions, ("CIDEr",))[0]["CIDEr"]

    best = validate()
    log.info("SCST start: dev CIDEr %.4f (beam %d)", best, cfg.beam)
    out_dir.mkdir(parents=True, exist_ok=True)
    best_path = out_dir / "scst-best.pt"
    fields = {k: v for k, v in base.items() if k not in ("optimizer", "scheduler", "rng")}
    save_checkpoint(best_path, **{**fields, "model": model.state_dict(), "scst": {"epoch": 0, "dev_CIDEr": best}})
    ids = list(refs)

    def keep_if_best(score: float, where: str) -> None:
        nonlocal best
        log.info("SCST %s: dev CIDEr %.4f (best %.4f)", where, score, max(best, score))
        if score > best:
            best = score
            save_checkpoint(best_path, **{**fields, "model": model.state_dict(), "scst": {"at": where,
                                                                                        "dev_CIDEr": score}})

    for epoch in range(1, cfg.epochs + 1):
        random.shuffle(ids)
        decoder.train()
        t0, rewards = time.perf_counter(), []
        batches = range(0, len(ids), cfg.batch_images)
        for n, i in enumerate(tqdm(batches, desc=f"SCST epoch {epoch}/{cfg.epochs}", unit="batch",
                                   mininterval=30.0), start=1):
            names = ids[i : i + cfg.batch_images]
            feats = torch.from_numpy(cache.get(names))
            tokens, logp = sample_captions(decoder, feats, cfg.samples, max_len, repeatable)
            hyps = [" ".join(vocab.decode(t)) for t in tokens.tolist()]
            r = torch.tensor([scorer.score(h, refs[names[j // cfg.samples]]) for j, h in enumerate(hyps)])
            r = r.view(len(names), cfg.samples)
            baseline = (r.sum(1, keepdim=True) - r) / (cfg.samples - 1)  # mean reward of the other samples
            advantage = (r - baseline).view(-1)
            loss = -(advantage * logp).mean()
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(decoder.parameters(), cfg.grad_clip)
            optimizer.step()
            rewards.append(float(r.mean()))
            if cfg.val_every and n % cfg.val_every == 0 and n < len(batches):
                log.info("SCST epoch %d batch %d: mean sample CIDEr-D %.4f (last %d batches)", epoch, n,
                         float(np.mean(rewards[-cfg.val_every:])), cfg.val_every)
                keep_if_best(validate(), f"epoch {epoch} batch {n}")
                decoder.train()
        score = validate()
        log.info("SCST epoch %d: mean sample CIDEr-D %.4f, %.0f images/s", epoch, float(np.mean(rewards)),
                 len(ids) / (time.perf_counter() - t0))
        save_checkpoint(out_dir / f"scst-epoch{epoch}.pt",
                        **{**fields, "model": model.state_dict(), "scst": {"epoch": epoch, "dev_CIDEr": score}})
        keep_if_best(score, f"epoch {epoch}")
    return best_path

"""The COCO caption metrics, computed by ``pycocoevalcap`` exactly as the papers report them.

Captions (references and candidates) go through the Stanford PTB tokenizer (Java) first, then BLEU-1..4,
METEOR (Java), ROUGE-L and CIDEr-D. SPICE needs Stanford CoreNLP model jars that pycocoevalcap downloads on
first use; this machine cannot, so SPICE is reported as unavailable (with the reason) instead of crashing.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

ALL_METRICS = ("BLEU", "METEOR", "ROUGE_L", "CIDEr", "SPICE")
SPICE_UNAVAILABLE = (
    "SPICE unavailable: pycocoevalcap's SPICE needs the Stanford CoreNLP 3.6.0 jars in {lib}, which it downloads "
    "from nlp.stanford.edu on first use; they are not installed and cannot be downloaded here."
)


class MetricsUnavailable(RuntimeError):
    """A metric cannot run here (no Java for the PTB tokenizer/METEOR, missing jars)."""


def spice_status() -> str | None:
    """None when SPICE can run, else the reason it cannot."""
    import pycocoevalcap.spice as spice_pkg

    lib = Path(spice_pkg.__file__).parent / "lib"
    if not (lib / "stanford-corenlp-3.6.0.jar").is_file() or not (lib / "stanford-corenlp-3.6.0-models.jar").is_file():
        return SPICE_UNAVAILABLE.format(lib=lib)
    if shutil.which("java") is None:
        return "SPICE unavailable: no `java` on PATH."
    return None


def ptb_tokenize(captions: dict[str, list[str]]) -> dict[str, list[str]]:
    """Stanford PTB tokenisation, lower-cased, punctuation removed (what every COCO score is computed on)."""
    if shutil.which("java") is None:
        raise MetricsUnavailable("the PTB tokenizer and METEOR run on Java: install a JRE (`java` on PATH)")
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    return PTBTokenizer().tokenize({k: [{"caption": c} for c in v] for k, v in captions.items()})


def score_captions(
    references: dict[str, list[str]],
    candidates: dict[str, str],
    metrics: tuple[str, ...] = ALL_METRICS,
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Corpus scores of one candidate caption per image against its references.

    Returns ``(scores, notes)``: scores maps Bleu_1..Bleu_4, METEOR, ROUGE_L, CIDEr (and SPICE) to values as
    pycocoevalcap computes them (None for SPICE when unavailable); notes says why a metric is missing.
    """
    keys = sorted(candidates)
    missing = [k for k in keys if not references.get(k)]
    if missing:
        raise ValueError(f"{len(missing)} candidate images have no references, e.g. {missing[:3]}")
    gts = ptb_tokenize({k: references[k] for k in keys})
    res = ptb_tokenize({k: [candidates[k]] for k in keys})
    scores: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    if "BLEU" in metrics:
        from pycocoevalcap.bleu.bleu import Bleu

        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        scores.update({f"Bleu_{i + 1}": float(b) for i, b in enumerate(bleu)})
    if "METEOR" in metrics:
        from pycocoevalcap.meteor.meteor import Meteor

        meteor = Meteor()
        try:
            scores["METEOR"] = float(meteor.compute_score(gts, res)[0])
        finally:
            del meteor  # its __del__ ends the Java process
    if "ROUGE_L" in metrics:
        from pycocoevalcap.rouge.rouge import Rouge

        scores["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
    if "CIDEr" in metrics:
        from pycocoevalcap.cider.cider import Cider

        scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    if "SPICE" in metrics:
        reason = spice_status()
        if reason is None:
            from pycocoevalcap.spice.spice import Spice

            scores["SPICE"] = float(Spice().compute_score(gts, res)[0])
        else:
            scores["SPICE"] = None
            notes["SPICE"] = reason
            log.warning(reason)
    return scores, notes

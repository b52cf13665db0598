"""Count the grammar slips a reader notices in captions: "a" before a vowel / "an" before a consonant, "a" with a
mass noun ("a broccoli"), a singular subject with "are" ("a bus are sitting"), a plural one with "is" ("two dogs
is running").

    .venv/bin/python bench/grammar_slips.py bench/results/lm_fusion_eval.json   # per set and LM weight
"""

from __future__ import annotations

import itertools
import json
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from captionbot.inference.labels import MASS_NOUNS  # noqa: E402

VOWEL_SOUND_EXCEPTIONS = ("uni", "use", "one", "eu", "uri", "ut")  # "a uniform", "a one way sign", "a utility"
SILENT_H = ("hour", "honest", "heir", "honor")
COLLECTIVE = frozenset(["group", "couple", "pair", "herd", "flock", "bunch", "team", "crowd", "lot", "number",
                        "few", "line", "row", "pile", "stack", "variety", "set", "bowl", "plate", "box"])
NUMBERS = frozenset(["two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "several", "many",
                     "multiple"])
VERB_IS = ("is", "sits", "has", "stands")
MASS_HEADS = MASS_NOUNS | {"food", "water", "grass", "snow", "sand", "fruit", "meat", "rice", "luggage", "furniture"}


def _subject(words: list[str]) -> tuple[list[str], str | None]:
    """Words before the first finite verb (is/are/sits/has/stands) and that verb; (all words, None) if none."""
    for i, w in enumerate(words):
        if w in ("is", "are", *VERB_IS):
            return words[:i], w
    return words, None


def slips(caption: str) -> list[str]:
    """The kinds of slip in one caption (a kind may repeat)."""
    words = caption.lower().rstrip(".").split()
    found = []
    for a, b in itertools.pairwise(words):
        if a == "a" and b[:1] in "aeiou" and not b.startswith(VOWEL_SOUND_EXCEPTIONS):
            found.append("a_before_vowel")
        if a == "an" and b[:1] not in "aeiou" and not b.startswith(SILENT_H):
            found.append("an_before_consonant")
        if a in ("a", "an") and b in MASS_NOUNS:
            found.append("a_mass_noun")
    subject, verb = _subject(words)
    if verb is None or not subject or "and" in subject:
        return found
    collective = bool(set(subject) & COLLECTIVE) and "of" in subject
    singular = subject[0] in ("a", "an", "one", "the") and not subject[-1].endswith("s")
    singular = singular or (subject[0] in ("a", "an", "one") and subject[-1] in ("bus", "glass"))
    if verb == "are" and singular and not collective:
        found.append("singular_are")
    if verb in VERB_IS and (subject[0] in NUMBERS or (subject[0] == "some" and subject[-1] not in MASS_HEADS)):
        found.append("plural_is")
    return found


def count_slips(captions: list[str]) -> dict[str, int]:
    """Slip kind -> how many captions have it."""
    counts: Counter[str] = Counter()
    for caption in captions:
        counts.update(set(slips(caption)))
    return dict(sorted(counts.items()))


def main() -> int:
    records = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    for name, by_weight in records.items():
        for weight, rec in by_weight.items():
            print(name, weight, count_slips(list(rec["captions"].values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

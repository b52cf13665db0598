"""Small English agreement rules for the captions we assemble (a label's phrase forced in front of the decoder's
words can break agreement the decoder alone would keep): "a"/"an" by the next word's sound, "some" for mass nouns
("some broccoli"), and which verb forms may follow a singular or plural subject ("a bus is", "some strawberries
are"). Counted on the dev sets' captions by ``bench/grammar_slips.py`` (docs/model.md).
"""

from __future__ import annotations

from captionbot.inference.labels import MASS_NOUNS, PLURALS

# words starting with a vowel letter but a consonant sound ("a uniform", "a one way sign") and the reverse
CONSONANT_SOUND = ("uni", "use", "usu", "one", "once", "eu", "uri", "ut")
VOWEL_SOUND = ("hour", "honest", "heir", "honor")
SINGULAR_VERBS = ("is", "sits", "has", "stands")
PLURAL_VERBS = ("are",)


def indefinite(word: str) -> str:
    """ "a" or "an" before ``word`` (by its sound, as far as spelling tells)."""
    w = word.lower()
    if w.startswith(VOWEL_SOUND):
        return "an"
    return "an" if w[:1] in "aeiou" and not w.startswith(CONSONANT_SOUND) else "a"


def plural(phrase: str) -> bool:
    """Whether a label's noun phrase is plural ("strawberries", "mashed potatoes")."""
    return phrase.split()[-1] in PLURALS or phrase in PLURALS


def mass(phrase: str) -> bool:
    """Whether a label's noun phrase is a mass noun ("broccoli", "ice cream"): "some", never "a"."""
    return phrase in MASS_NOUNS or phrase.split()[-1] in MASS_NOUNS


def article(phrase: str) -> str:
    """The article a caption starting with ``phrase`` takes: "some" for plural and mass nouns, else "a"/"an"."""
    return "some" if plural(phrase) or mass(phrase) else indefinite(phrase)


def disagreeing_verbs(phrase: str) -> tuple[str, ...]:
    """Verb forms that may not follow ``phrase`` as its subject: "are" after "a bus" or "some broccoli", "is"
    after "some strawberries"."""
    return SINGULAR_VERBS if plural(phrase) else PLURAL_VERBS


def fix_articles(words: list[str]) -> list[str]:
    """ "a" / "an" made to fit the next word ("a apple" -> "an apple"); mass nouns get "some" ("a broccoli",
    "skating on an ice"). One word for one word, so each keeps its attention map."""
    out = list(words)
    for i in range(len(out) - 1):
        if out[i] in ("a", "an"):
            nxt = out[i + 1]
            out[i] = "some" if nxt in MASS_NOUNS else indefinite(nxt)
    return out

"""Which words of a caption deserve a heatmap panel, and where in the image a word's attention was strongest,
in words ("dog: lower left") for the heatmap's alt text.

Content words are the words that name or describe something that can be seen (nouns, verbs, adjectives):
"a", "the", "is", "of", ... are function words and get no panel, since their attention says nothing about the
image. The strongest region is the grid cell with the largest attention weight; it is named by the third of the
image it falls in, across and down ("upper left", "centre", "lower right"). A map that is nearly uniform (its peak
under :data:`FLAT_PEAK` times the uniform weight) is named "across the whole image": the model did not look
anywhere in particular, and the alt text says so rather than claim a place.
"""

from __future__ import annotations

import numpy as np

# Articles, pronouns, auxiliaries, prepositions, conjunctions and small numbers: words with no place in the image.
_FUNCTION_WORDS_TEXT = """
a an the this that these those there here it its it's his her hers their theirs our your my he she they them him
we you i me us one two three four five several some many each another other others all both
is are was were be been being am has have had do does did will would can could
of in on at to into onto from with without by for over under near next behind beside through across along
around up down out off about against between among toward towards while as than then and or but so
"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS_TEXT.split())

# Peaks under this many times the uniform weight (1/P) are called flat: "across the whole image".
FLAT_PEAK = 1.5

_ROWS = ("upper", "middle", "lower")
_COLUMNS = ("left", "centre", "right")


def is_content_word(word: str) -> bool:
    """True for a word worth a heatmap panel ("dog", "running", "red"); False for "a", "the", "is", ..."""
    w = word.strip().lower()
    return bool(w) and any(ch.isalpha() for ch in w) and w not in FUNCTION_WORDS


def content_indices(words: list[str]) -> list[int]:
    """Positions of the content words of ``words``."""
    return [i for i, w in enumerate(words) if is_content_word(w)]


def strongest_cell(alpha: np.ndarray, grid: tuple[int, int]) -> tuple[int, int]:
    """(row, column) of the grid cell with the largest attention weight."""
    a = np.asarray(alpha, dtype=np.float64).reshape(grid)
    r, c = np.unravel_index(int(np.argmax(a)), a.shape)
    return int(r), int(c)


def is_flat(alpha: np.ndarray) -> bool:
    """True when the map's peak is under :data:`FLAT_PEAK` times the uniform weight."""
    a = np.asarray(alpha, dtype=np.float64).ravel()
    return float(a.max()) < FLAT_PEAK * float(a.sum()) / a.size


def region_name(alpha: np.ndarray, grid: tuple[int, int]) -> str:
    """Where the map's strongest cell is, in words: "upper left", "centre", "lower right", ..., or "across the
    whole image" for a flat map."""
    if is_flat(alpha):
        return "across the whole image"
    r, c = strongest_cell(alpha, grid)
    row = _ROWS[min(2, r * 3 // grid[0])]
    col = _COLUMNS[min(2, c * 3 // grid[1])]
    if row == "middle":
        return "centre" if col == "centre" else f"middle {col}"
    return f"{row} {col}"


def where_words_looked(words: list[str], alphas: np.ndarray, grid: tuple[int, int]) -> str:
    """Alt text for a heatmap: each content word and where its attention was strongest, e.g.
    "dog: lower left; ball: centre". A word that occurs twice is named each time. "" when there is no content word."""
    return "; ".join(f"{words[i]}: {region_name(alphas[i], grid)}" for i in content_indices(words))

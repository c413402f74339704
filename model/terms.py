"""Words and their terms: one rule for what counts as the same word in a query and in a transcript.

A term is a word's Snowball (Porter 2) English stem, so "moves", "moving" and "move" are one term, and
"circles" meets "circle". One step further than Snowball: a direction adverb in -ward(s) is its base
("upwards" -> "up"), because a narrator says "the circle moves upwards" and an archivist types "circle
going up". On the five 20-minute sample archives, the narration lexicon matching terms instead of
word forms (nothing else changed) raised top-3 from 0.76-0.88 to 0.87-0.91 (README, "Measured here").

The stemmer is English; words of other scripts pass through unchanged (\\w is Unicode-aware).
"""

from __future__ import annotations

import functools
import re

import snowballstemmer

TERMS = "snowball-english+ward/1"  # stored with what is built from terms (model.lexicon): a change must rebuild it
WORD = re.compile(r"\w+")  # a word: a run of word characters
_STEMMER = snowballstemmer.stemmer("english")
# Bases English forms -ward(s) direction adverbs from ("upwards", "homeward", "seaward"); a closed list,
# since a bare "-ward" ending is often not that suffix ("reward", "steward", "coward").
WARD_BASES = frozenset("up down back in out home sky sea land earth east west north south left right".split())
# Query words too common to carry what a moment shows or says (not highlighted, not explained)
STOPWORDS = frozenset(
    "a an and are as at be by for from in into is it its of on or over than that the their then there "
    "these this those to under was were with".split())
MIN_WORD_LEN = 2  # characters; shorter query words are not content words


def words_of(text: str) -> list[str]:
    """Lower-cased word forms, in order."""
    return WORD.findall(text.lower())


@functools.lru_cache(maxsize=65536)
def term(word: str) -> str:
    """The term of a lower-cased word form."""
    stem = _STEMMER.stemWord(word)
    if stem.endswith("ward") and stem[:-4] in WARD_BASES:
        return stem[:-4]
    return stem


def terms_of(text: str) -> list[str]:
    """The terms of `text`'s words, in order."""
    return [term(w) for w in words_of(text)]


def query_terms(query: str) -> set[str]:
    """The terms of the query's content words: the ones the UI highlights and a hit's "why" names."""
    return {term(w) for w in words_of(query) if len(w) >= MIN_WORD_LEN and w not in STOPWORDS}

"""Safe display text for Streamlit markdown: escaping and query-word highlighting.

Transcripts and file names are user data. `st.markdown(..., unsafe_allow_html=True)` would read
them as HTML *and* as markdown (links, emphasis, `$math$`, `:red[...]` directives), so every
character that means something to either is written as a numeric character reference; the only
markup in the result is the <mark> we add around matched words.
"""

from __future__ import annotations

import re

from model.lexicon import words_of

# Characters with a meaning in HTML, CommonMark, GitHub markdown or Streamlit's markdown extensions.
_SPECIAL = frozenset("&<>\"'`*_~[](){}#+-.!|\\$:=^")
# Query words too common to be worth highlighting.
STOPWORDS = frozenset(
    "a an and are as at be by for from in into is it its of on or over than that the their then there "
    "these this those to under was were with".split())
MIN_WORD_LEN = 2  # characters; shorter query words are not highlighted
SUFFIXES = ("ing", "ed", "es", "s")  # stripped from query words, so "rolling" also marks "rolls"
MIN_STEM_LEN = 3  # characters left after stripping a suffix


def escape(text: str) -> str:
    """`text` as inert markdown/HTML: special characters become references, line breaks spaces."""
    text = re.sub(r"\s+", " ", text)
    return "".join(f"&#{ord(c)};" if c in _SPECIAL else c for c in text)


def _stem(word: str) -> str:
    for suffix in SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= MIN_STEM_LEN:
            return word[: -len(suffix)]
    return word


def query_words(query: str) -> list[str]:
    """Stems of the query's words worth highlighting, longest first (so a longer one wins an overlap)."""
    words = {_stem(w) for w in words_of(query) if len(w) >= MIN_WORD_LEN and w not in STOPWORDS}
    return sorted(words, key=lambda w: (-len(w), w))


def highlight(text: str, query: str) -> str:
    """`text` escaped, with words that start with a query word's stem wrapped in <mark> ("pours" marks "pouring")."""
    words = query_words(query)
    if not words:
        return escape(text)
    pattern = re.compile(r"\b(?:" + "|".join(re.escape(w) for w in words) + r")\w*", re.IGNORECASE)
    out, pos = [], 0
    for m in pattern.finditer(text):
        out.append(escape(text[pos:m.start()]))
        out.append(f"<mark>{escape(m.group(0))}</mark>")
        pos = m.end()
    out.append(escape(text[pos:]))
    return "".join(out)

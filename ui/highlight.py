"""Safe display text for Streamlit markdown: escaping and query-word highlighting.

Transcripts and file names are user data. `st.markdown(..., unsafe_allow_html=True)` would read
them as HTML *and* as markdown (links, emphasis, `$math$`, `:red[...]` directives), so every
character that means something to either is written as a numeric character reference; the only
markup in the result is the <mark> we add around matched words.
"""

from __future__ import annotations

import re

from model.terms import WORD, query_terms, term

# Characters with a meaning in HTML, CommonMark, GitHub markdown or Streamlit's markdown extensions.
_SPECIAL = frozenset("&<>\"'`*_~[](){}#+-.!|\\$:=^")


def escape(text: str) -> str:
    """`text` as inert markdown/HTML: special characters become references, line breaks spaces."""
    text = re.sub(r"\s+", " ", text)
    return "".join(f"&#{ord(c)};" if c in _SPECIAL else c for c in text)


def highlight(text: str, query: str) -> str:
    """`text` escaped, with each word that is a form of a query word wrapped in <mark> ("pours" marks
    "pouring", "up" marks "upwards"): the same rule by which the narration lexicon matches words."""
    terms = query_terms(query)
    if not terms:
        return escape(text)
    out, pos = [], 0
    for m in WORD.finditer(text):
        if term(m.group(0).lower()) not in terms:
            continue
        out.append(escape(text[pos:m.start()]))
        out.append(f"<mark>{escape(m.group(0))}</mark>")
        pos = m.end()
    out.append(escape(text[pos:]))
    return "".join(out)

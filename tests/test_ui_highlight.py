"""ui/highlight.py: user text shown in the page is inert; query words are marked."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from ui.highlight import escape, highlight, query_terms


def test_query_terms_drop_stopwords_and_stem():
    assert query_terms("A man is Pouring water into the glasses") == {"glass", "water", "pour", "man"}
    assert query_terms("a of") == set()


def test_highlight_marks_forms_of_the_query_words_only():
    assert highlight("Pouring milk; the spout pours.", "pours milk") == (
        "<mark>Pouring</mark> <mark>milk</mark>; the spout <mark>pours</mark>&#46;")
    assert highlight("The circle moves upwards.", "circles going up") == (
        "The <mark>circle</mark> moves <mark>upwards</mark>&#46;")
    assert highlight("a carpet, two cars", "car") == "a carpet, two <mark>cars</mark>"  # another word: no mark
    assert highlight("scar", "car") == "scar"


def test_markup_in_text_and_query_stays_text():
    out = highlight("<b>red</b> [x](javascript:alert(1)) $e$ :red[r]", "red <b>")
    assert "<b>" not in out and "](" not in out and "$" not in out and ":red[" not in out
    assert out.count("<mark>") == 2 and "<mark>red</mark>" in out


@given(st.text(), st.text())
def test_only_our_marks_survive(text, query):
    out = highlight(text, query)
    rest = out.replace("<mark>", "").replace("</mark>", "")
    assert not re.search(r"[<>\[\]()*_`$\\|~]", rest)
    assert rest == escape(text)

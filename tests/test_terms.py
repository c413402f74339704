"""model/terms.py: what counts as the same word in a query and in a transcript."""

from __future__ import annotations

from model.terms import term, terms_of, words_of


def test_words_are_lower_cased_word_forms_of_any_script():
    assert words_of("The RED circle, going up-wards; déjà vu 北京") == ["the", "red", "circle", "going", "up", "wards",
                                                                       "déjà", "vu", "北京"]


def test_forms_of_a_word_share_its_term():
    for forms in (("move", "moves", "moving", "moved"), ("circle", "circles"), ("pour", "pours", "pouring"),
                  ("up", "upward", "upwards"), ("down", "downwards"), ("back", "backwards"), ("left", "leftwards")):
        assert len({term(w) for w in forms}) == 1, forms
    assert terms_of("Moves UP") == terms_of("moving up") == ["move", "up"]


def test_different_words_keep_different_terms():
    # a bare "-ward" ending is not the direction suffix; and no two directions meet
    assert len({term(w) for w in ("reward", "re", "steward", "coward", "co", "toward", "to")}) == 7
    assert len({term(w) for w in ("up", "down", "left", "right", "forward", "for")}) == 6
    assert term("red") != term("reduce") and term("car") != term("carpet")

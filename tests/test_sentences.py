import math

from hypothesis import given, settings
from hypothesis import strategies as st

from indexer.sentences import Word, clean_words, group_sentences


def words(spec: str, start: float = 0.0, step: float = 0.3, conf: float | None = 0.9) -> list[Word]:
    """Words of `spec`, one every `step` s; a "|" token inserts a 2 s pause."""
    out, t = [], start
    for tok in spec.split():
        if tok == "|":
            t += 2.0
            continue
        out.append(Word(t, t + step * 0.8, tok, conf))
        t += step
    return out


def texts(sentences):
    return [s.text for s in sentences]


def test_punctuation_ends_sentences_and_times_follow_words():
    ws = words("Hello there. How are you? Fine!")
    out = group_sentences(ws, "en")
    assert texts(out) == ["Hello there.", "How are you?", "Fine!"]
    assert out[1].start == ws[2].start and out[1].end == ws[4].end
    assert all(s.language == "en" for s in out)


def test_pause_ends_a_sentence_without_punctuation():
    out = group_sentences(words("no punctuation here | after the pause"), "en")
    assert texts(out) == ["no punctuation here", "after the pause"]


def test_abbreviations_and_quotes():
    out = group_sentences(words('Dr. Smith said "stop." Then e.g. nothing.'), "en")
    assert texts(out) == ['Dr. Smith said "stop."', "Then e.g. nothing."]


def test_long_sentence_split_at_last_comma():
    spec = "one two three four, five six seven eight nine ten"
    out = group_sentences(words(spec), "en", max_chars=40)
    assert out[0].text == "one two three four,"
    assert " ".join(texts(out)) == spec
    assert all(len(s.text) <= 40 for s in out)


def test_long_sentence_split_by_duration_without_comma():
    out = group_sentences(words(" ".join(["word"] * 40), step=1.0), "en", max_seconds=10.0)
    assert len(out) >= 4
    assert all(s.end - s.start <= 10.0 for s in out)
    assert sum(len(s.text.split()) for s in out) == 40


def test_confidence_is_mean_of_known_word_confidences():
    ws = [Word(0, 0.5, "a", 0.5), Word(0.5, 1.0, "b", None), Word(1.0, 1.5, "c.", 1.0)]
    assert group_sentences(ws, "en")[0].confidence == 0.75
    assert group_sentences(words("no scores.", conf=None), None)[0].confidence is None


def test_languages_without_spaces_join_directly():
    ws = [Word(0, 0.3, "你好", 0.9), Word(0.3, 0.6, "世界。", 0.9)]
    assert texts(group_sentences(ws, "zh")) == ["你好世界。"]


def test_bad_words_are_cleaned_not_fatal():
    ws = [Word(float("nan"), 1.0, "nan", 0.5), Word(-1.0, -0.5, "neg", 0.5), Word(2.0, 1.0, "back", float("inf")),
          Word(3.0, 3.5, "   ", 0.5)]
    cleaned = clean_words(ws)
    assert [w.text for w in cleaned] == ["neg", "back"]
    assert cleaned[0].start == 0.0 and cleaned[0].end == 0.0
    assert cleaned[1].end == 2.0 and cleaned[1].confidence is None
    assert group_sentences([], "en") == []


word_st = st.tuples(
    st.floats(0, 5, allow_nan=False),  # gap before the word
    st.floats(0, 2, allow_nan=False),  # duration
    st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12),
    st.one_of(st.none(), st.floats(0, 1)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(word_st, max_size=60), st.sampled_from(["en", "zh", None]))
def test_property_sentences_keep_every_word_in_order_within_limits(spec, language):
    ws, t = [], 0.0
    for gap, dur, text, conf in spec:
        t += gap
        ws.append(Word(t, t + dur, text, conf))
        t += dur
    out = group_sentences(ws, language, max_seconds=10.0, max_chars=60)
    kept = [" ".join(w.text.split()) for w in clean_words(ws)]
    sep = "" if language == "zh" else " "
    assert sep.join(s.text for s in out) == sep.join(kept)
    for s in out:
        assert s.start <= s.end and math.isfinite(s.start)
        n_words = len(s.text.split()) if sep else 1
        assert n_words == 1 or len(s.text) <= 60 or language == "zh"
    assert [s.start for s in out] == sorted(s.start for s in out)

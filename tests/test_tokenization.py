"""VideoBERT inputs: sequence forms, segments, clip-time positions, truncation, collation, masking."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from videobert_synth import N_VISUAL, tiny_tokenizer

from model.masking import IGNORE_INDEX, MaskingOptions, mask_batch
from model.tokenization import TokenizationError


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("vocab"))


def test_joint_form_layout(tok):
    video = np.array([[0, 4, 8], [1, 5, 9]])
    e = tok.encode("the red ball rolls", video)
    words = tok.text_ids(["the red ball rolls"])[0]
    assert len(words) == 4
    vis = (video + tok.visual_offset).reshape(-1).tolist()
    assert e.input_ids == [tok.cls_id, *words, tok.visual_sep_id, *vis, tok.sep_id]
    assert e.token_type_ids == [0] * 6 + [1] * 7
    # a clip's three tokens share one clip-time position
    assert e.position_ids == [0, 1, 2, 3, 4, 5, 6, 6, 6, 7, 7, 7, 8]
    assert e.group_ids == [0] * 6 + [1, 2, 3, 1, 2, 3, 0]
    assert e.text_mask == [False, True, True, True, True] + [False] * 8
    assert e.visual_mask == [False] * 6 + [True] * 6 + [False]
    assert tok.vocab_size == tok.text_vocab_size + 1 + N_VISUAL


def test_text_only_and_video_only_forms(tok):
    t = tok.encode("the blue car", None)
    assert t.input_ids[0] == tok.cls_id and t.input_ids[-1] == tok.sep_id
    assert tok.visual_sep_id not in t.input_ids and not any(t.visual_mask)
    assert t.position_ids == list(range(len(t)))
    v = tok.encode(None, np.array([[2, 6, 10]]))
    assert v.input_ids == [tok.cls_id, tok.visual_sep_id, *(np.array([2, 6, 10]) + tok.visual_offset), tok.sep_id]
    assert v.position_ids == [0, 1, 2, 2, 2, 3] and not any(v.text_mask)
    with pytest.raises(TokenizationError):
        tok.encode(None, None)


def test_truncation_keeps_whole_clips_spread_over_the_window(tok):
    long_text = " ".join(["red ball"] * 40)
    video = np.stack([np.array([i % 4, 4 + i // 10, 8]) for i in range(40)])  # slot 2 names the quarter
    e = tok.encode(long_text, video)
    assert len(e) <= tok.max_len
    n_text = sum(e.text_mask)
    assert n_text == tok.max_text_len  # text capped at max_text_len when the video fills the rest
    n_vis = sum(e.visual_mask)
    assert n_vis % 3 == 0 and n_vis // 3 == (tok.max_len - 3 - n_text) // 3
    # thinning spans the window: kept clips come from every quarter, at consecutive clip positions
    vis_ids = [i for i, v in zip(e.input_ids, e.visual_mask, strict=True) if v]
    assert {i - tok.visual_offset for i in vis_ids[1::3]} == {4, 5, 6, 7}
    positions = sorted({p for p, v in zip(e.position_ids, e.visual_mask, strict=True) if v})
    assert positions == list(range(positions[0], positions[0] + n_vis // 3))
    # a short video leaves its room to the text
    e2 = tok.encode(long_text, video[:1])
    assert sum(e2.text_mask) == tok.max_len - 3 - 3
    # text-only uses the whole length
    assert len(tok.encode(long_text, None)) == tok.max_len


def test_bad_visual_tokens_are_refused(tok):
    with pytest.raises(TokenizationError, match="shape"):
        tok.encode("red", np.array([[1, 2]]))
    with pytest.raises(TokenizationError, match="lie in"):
        tok.encode("red", np.array([[0, 4, N_VISUAL]]))
    with pytest.raises(TokenizationError, match="integers"):
        tok.encode("red", np.array([[0.0, 4.0, 8.0]]))


def test_collate_pads_and_masks(tok):
    items = tok.encode_batch(["the red ball rolls", None, "a dog"],
                             [np.array([[0, 4, 8]]), np.array([[1, 5, 9], [2, 6, 10]]), None])
    b = tok.collate(items)
    width = max(len(e) for e in items)
    for name in ("input_ids", "token_type_ids", "position_ids", "attention_mask", "text_mask", "visual_mask",
                 "group_ids"):
        assert getattr(b, name).shape == (3, width)
    assert b.attention_mask.sum(1).tolist() == [len(e) for e in items]
    assert (b.input_ids[b.attention_mask == 0] == tok.pad_id).all()
    assert not b.text_mask[b.attention_mask == 0].any() and not b.visual_mask[b.attention_mask == 0].any()


def test_masking_statistics_follow_15_percent_and_80_10_10(tok):
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(["red", "blue", "ball", "car", "the", "rolls"], size=12)) for _ in range(200)]
    videos = [rng.integers(0, N_VISUAL, size=(8, 3)) for _ in range(200)]
    b = tok.collate(tok.encode_batch(texts, videos))
    m = mask_batch(b, tok.mask_id, tok.text_vocab_size, tok.visual_offset, tok.n_visual_words,
                   MaskingOptions(), torch.Generator().manual_seed(0))
    for labels, where, lo, hi in ((m.mlm_labels, b.text_mask, 0, tok.text_vocab_size),
                                  (m.mvm_labels, b.visual_mask, tok.visual_offset, tok.vocab_size)):
        chosen = labels != IGNORE_INDEX
        assert not (chosen & ~where).any()  # only its own modality is ever chosen
        rate = chosen.sum().item() / where.sum().item()
        assert abs(rate - 0.15) < 0.015
        new = m.input_ids[chosen]
        masked = (new == tok.mask_id).float().mean().item()
        kept = (new == b.input_ids[chosen]).float().mean().item()
        assert abs(masked - 0.8) < 0.04
        # random replacements stay in the same modality (kept includes random draws equal to the original)
        replaced = new[(new != tok.mask_id) & (new != b.input_ids[chosen])]
        assert ((replaced >= lo) & (replaced < hi)).all()
        assert 0.07 < kept < 0.2
    # labels: text ids for MLM, visual word indices for MVM
    assert (m.mvm_labels[m.mvm_labels != IGNORE_INDEX] < N_VISUAL).all()
    assert torch.equal(m.mlm_labels[m.mlm_labels != IGNORE_INDEX], b.input_ids[m.mlm_labels != IGNORE_INDEX])
    # untouched positions are unchanged
    untouched = (m.mlm_labels == IGNORE_INDEX) & (m.mvm_labels == IGNORE_INDEX)
    assert torch.equal(m.input_ids[untouched], b.input_ids[untouched])


def test_offline_minilm_tokenizer_adds_visual_words():
    from model.textmodels import offline_bert_dir
    from model.tokenization import VideoBertTokenizer

    tok = VideoBertTokenizer.from_pretrained(offline_bert_dir(), n_visual_words=100, tokens_per_clip=4)
    assert tok.text_vocab_size == 30522 and tok.visual_sep_id == 30522 and tok.vocab_size == 30522 + 1 + 100
    e = tok.encode("now let me show you how to [MASK] the [MASK]", np.zeros((2, 4), np.int64))
    assert e.input_ids.count(tok.mask_id) == 2


@pytest.mark.parametrize("source", ["offline", "tiny"])
def test_a_saved_tokenizer_reads_back_without_transformers_with_the_same_ids(source, tmp_path):
    # checkpoints load their tokenizer with `tokenizers` alone (model.tokenization.WordPieces): the ids,
    # specials, pieces and decoded text must be transformers' own
    from transformers import BertTokenizerFast

    from model.textmodels import offline_bert_dir
    from model.tokenization import WordPieces

    if source == "offline":
        ref = BertTokenizerFast.from_pretrained(str(offline_bert_dir()), local_files_only=True)
    else:
        ref = tiny_tokenizer(tmp_path / "vocab").text
    ref.save_pretrained(str(tmp_path / "saved"))
    ours = WordPieces(tmp_path / "saved")
    texts = ["A hand pouring liquid into a glass.", "now let me show you how to [MASK] the [MASK]",
             "Don't  stop—it's the café's 3rd run!", "", "red " * 300]
    assert ours(texts, add_special_tokens=False)["input_ids"] == ref(texts, add_special_tokens=False)["input_ids"]
    assert len(ours) == len(ref) and ours.all_special_ids == [ref.unk_token_id, ref.sep_token_id, ref.pad_token_id,
                                                              ref.cls_token_id, ref.mask_token_id]
    assert (ours.mask_token, ours.mask_token_id, ours.cls_token_id) == (ref.mask_token, ref.mask_token_id,
                                                                        ref.cls_token_id)
    ids = ref(texts[:3], add_special_tokens=True)["input_ids"]
    assert ours.convert_ids_to_tokens(ids[0]) == ref.convert_ids_to_tokens(ids[0])
    for row in ids:
        assert ours.decode(row, skip_special_tokens=True) == ref.decode(row, skip_special_tokens=True,
                                                                        clean_up_tokenization_spaces=True)
    ours.save_pretrained(tmp_path / "again")  # a checkpoint saved from a loaded one reads back the same
    assert WordPieces(tmp_path / "again")(texts, add_special_tokens=False) == ours(texts, add_special_tokens=False)

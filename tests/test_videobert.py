"""VideoBERT model: shapes of every head for every input form, checkpoints, initialisation, inference API."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from videobert_synth import N_VISUAL, tiny_model, tiny_tokenizer

from model.checkpoint import CheckpointError, load_model, save_model
from model.inference import VideoBertInference
from model.videobert import late_interaction, visual_embeddings_from_word_vectors

H = 32


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("vocab"))


@pytest.fixture(scope="module")
def model(tok):
    return tiny_model(tok, hidden=H).eval()


def _batch(tok):
    return tok.collate(tok.encode_batch(
        ["the red ball rolls", None, "a blue car"],
        [np.array([[0, 4, 8], [1, 5, 9]]), np.array([[2, 6, 10]]), None]))


def test_shapes_of_every_head_and_input_form(tok, model):
    b = _batch(tok)
    B, T = b.input_ids.shape
    out = model(**b.model_inputs())
    assert out.hidden.shape == (B, T, H) and out.pooled.shape == (B, H)
    assert model.mlm_logits(out.hidden[b.text_mask]).shape == (int(b.text_mask.sum()), tok.text_vocab_size)
    assert model.mvm_logits(out.hidden[b.visual_mask]).shape == (int(b.visual_mask.sum()), N_VISUAL)
    assert model.align_logits(out, b.text_mask, b.visual_mask).shape == (B,)
    emb = model.embed(out.hidden, b.attention_mask)
    assert emb.shape == (B, model.cfg.embed_dim)
    assert torch.allclose(emb.norm(dim=1), torch.ones(B), atol=1e-5)
    assert model.cfg.vocab_size == tok.vocab_size == model.word_embeddings.shape[0]


def test_padding_does_not_change_outputs(tok, model):
    alone = tok.collate([tok.encode("a blue car", None)])
    padded = _batch(tok)
    h1 = model(**alone.model_inputs()).hidden[0]
    h2 = model(**padded.model_inputs()).hidden[2, : h1.shape[0]]
    assert torch.allclose(h1, h2, atol=1e-5)


def test_save_then_load_gives_identical_outputs(tok, model, tmp_path):
    save_model(tmp_path / "ckpt", model, tok)
    loaded, tok2 = load_model(tmp_path / "ckpt")
    b = _batch(tok)
    assert tok2.settings() == tok.settings() and tok2.text_vocab_size == tok.text_vocab_size
    o1, o2 = model(**b.model_inputs()), loaded(**b.model_inputs())
    assert torch.equal(o1.hidden, o2.hidden) and torch.equal(o1.pooled, o2.pooled)
    assert torch.equal(model.align_logits(o1, b.text_mask, b.visual_mask),
                       loaded.align_logits(o2, b.text_mask, b.visual_mask))
    assert not list((tmp_path / "ckpt").glob("*.pt")) and not list((tmp_path / "ckpt").glob("*.bin"))


def test_tampered_or_mismatched_checkpoint_is_refused(tok, model, tmp_path):
    folder = tmp_path / "ckpt"
    save_model(folder, model, tok)
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        load_model(folder)

    other = tmp_path / "other"
    save_model(other, tiny_model(tok, hidden=16), tok)
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError):
        load_model(folder)
    with pytest.raises(CheckpointError, match="not a VideoBERT checkpoint"):
        load_model(tmp_path / "nothing-here")


def test_visual_embeddings_keep_neighbourhoods_and_text_scale():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 40))
    words = np.concatenate([c + 0.05 * rng.normal(size=(4, 40)) for c in centres])  # 5 clusters of 4
    emb = visual_embeddings_from_word_vectors(words, hidden_size=16, target_norm=1.3).numpy()
    assert emb.shape == (20, 16)
    assert np.allclose(np.linalg.norm(emb, axis=1), 1.3, atol=1e-5)
    cos = emb @ emb.T / 1.3**2
    same = np.kron(np.eye(5), np.ones((4, 4))).astype(bool)
    assert cos[same].mean() > cos[~same].mean() + 0.3


def test_from_offline_minilm_extends_vocabulary():
    from model.textmodels import offline_bert_dir
    from model.tokenization import VideoBertTokenizer
    from model.videobert import from_pretrained_bert

    tok = VideoBertTokenizer.from_pretrained(None, n_visual_words=30, tokens_per_clip=2)
    wv = np.random.default_rng(0).normal(size=(30, 12)).astype(np.float32)
    model = from_pretrained_bert(offline_bert_dir(), 30, 2, wv, tok.sep_id).eval()
    emb = model.word_embeddings.detach()
    assert emb.shape == (tok.vocab_size, 384)
    text_norm = emb[: tok.text_vocab_size].norm(dim=1).mean()
    assert torch.allclose(emb[tok.visual_offset:].norm(dim=1), text_norm.expand(30), rtol=1e-4)
    assert torch.equal(emb[tok.visual_sep_id], emb[tok.sep_id])
    # the text side is the pretrained sentence encoder: paraphrases are closer than unrelated text
    vb = VideoBertInference(model, tok)
    v = vb.encode_text(["a man is cutting an onion", "someone slices an onion", "the stock market fell today"])
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2


def test_inference_api_shapes(tok, model):
    vb = VideoBertInference(model, tok, batch_size=2)
    videos = [np.array([[0, 4, 8]]), np.array([[1, 5, 9], [2, 6, 10]]), np.array([[3, 7, 8]])]
    t = vb.encode_text(["the red ball", "a car", "the dog spins"])
    v = vb.encode_video(videos)
    assert t.shape == v.shape == (3, model.cfg.embed_dim) and t.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    p = vb.align_prob(["the red ball"] * 3, videos)
    assert p.shape == (3,) and ((p > 0) & (p < 1)).all()
    s = vb.word_scores("the red ball", videos)  # batch_size 2: the videos span two forward passes
    assert s.shape == (3,) and ((s >= -1 - 1e-5) & (s <= 1 + 1e-5)).all()
    assert np.allclose(s[1:], vb.word_scores("the red ball", videos[1:]), atol=1e-5)
    guesses = vb.predict_masked("now let me show you how to [MASK] the [MASK]", videos[0], top_k=3)
    assert len(guesses) == 2 and all(len(g) == 3 for g in guesses)
    assert all(not g.word.startswith(("[", "##")) for gs in guesses for g in gs)
    assert all(gs[0].prob >= gs[1].prob >= gs[2].prob for gs in guesses)
    with pytest.raises(ValueError, match="MASK"):
        vb.predict_masked("no mask here", videos[0])


def test_late_interaction_matches_every_text_token_on_its_own():
    red, left, right, sky = torch.eye(4)
    text = torch.stack([red, left, sky])[None]  # (1, 3, E); "sky" is padding
    text_mask = torch.tensor([[True, True, False]])
    video = torch.stack([torch.stack([sky, left, red]),  # both words shown, in another order
                         torch.stack([red, right, right]),  # red, but moving the other way
                         torch.stack([red, sky, left])])  # "left" hidden by the mask
    video_mask = torch.tensor([[True, True, True], [True, True, True], [True, True, False]])
    s = late_interaction(text, text_mask, video, video_mask)[0][0]  # text -> video, the one text
    assert torch.allclose(s, torch.tensor([1.0, 0.5, 0.5]))


def test_the_encoder_equals_transformers_bert_on_the_same_weights():
    # model/bert.py replaces transformers' BertModel (whose import cost a cold CLI search 4.5 s): the same
    # state dict must load and give the same hidden states and pooled [CLS], padding included
    from transformers import BertConfig, BertModel

    from model.bert import Bert
    from model.videobert import VideoBertConfig

    cfg = VideoBertConfig(text_vocab_size=40, n_visual_words=8, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=4, intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    ref = BertModel(BertConfig(vocab_size=cfg.visual_offset, hidden_size=32, num_hidden_layers=2,
                               num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                               type_vocab_size=2), add_pooling_layer=True).eval()
    ours = Bert(cfg).eval()
    missing, unexpected = ours.load_state_dict(ref.state_dict(), strict=True)
    assert not missing and not unexpected
    embeds = torch.randn(3, 10, 32)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[1, 6:] = 0  # padding
    types = (torch.arange(10) >= 5).long().expand(3, 10)
    positions = torch.arange(10).expand(3, 10)
    with torch.no_grad():
        want = ref(inputs_embeds=embeds, attention_mask=mask, token_type_ids=types, position_ids=positions)
        hidden, pooled = ours(embeds, mask, types, positions)
    assert torch.allclose(hidden[mask.bool()], want.last_hidden_state[mask.bool()], atol=1e-5)
    assert torch.allclose(pooled, want.pooler_output, atol=1e-5)

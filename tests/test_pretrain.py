"""Pretraining: examples from tables, exact resume, and overfitting a tiny narrated archive."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from videobert_synth import archive, tiny_model, tiny_tokenizer

from model.pretrain import Pretrainer, PretrainOptions, lr_factor
from model.pretrain_data import DataOptions, PretrainData, PretrainDataError, overlap_matrix, spans_overlap

LOSSES = ("mlm", "mvm", "align", "itc", "itc_words")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and the test machine's cores are shared."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tables():
    return archive()


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("vocab"))


def test_windows_from_polars_tables(tables):
    sentences, clips, tokens = tables
    data = PretrainData(pl.DataFrame(sentences), pl.DataFrame(clips), tokens, DataOptions(held_out_fraction=0.25))
    assert len(data.train) + len(data.held_out) == len(sentences)
    assert len(data.held_out) == len(sentences) // 4
    assert {w.text for w in data.train}.isdisjoint({w.text for w in data.held_out})
    for w in data.train:
        assert len(w.clips) == 2  # the two clips inside each 3 s sentence
        assert all(tokens[r].tolist() == tokens[w.clips[0]].tolist() for r in w.clips)
    # silent stretches (3 uncovered clips after every 4th sentence) become video-only windows
    assert len(data.silent_train) + len(data.silent_held_out) == 4 * 3
    assert all(w.text is None and len(w.clips) == 3 for w in data.silent_train)


def test_step_examples_and_augmentations(tables):
    sentences, clips, tokens = tables
    data = PretrainData(sentences, clips, tokens, DataOptions(held_out_fraction=0.0, join_prob=0.5))
    rng = np.random.default_rng(0)
    joined = lengths = 0
    for _ in range(50):
        ex = data.sample_step(rng, batch_size=8, n_silent=2)
        assert len(ex.positives) == len(ex.random_negative_videos) == 8 and len(ex.silent_videos) == 2
        for p, (vid, s, e) in zip(ex.positives, ex.random_negative_spans, strict=True):
            assert not spans_overlap(p.video_id, p.start, p.end, vid, s, e)
            assert 1 <= len(p.video) and p.video.shape[1] == 3
            joined += len(p.text.split()) > 4
            lengths += len(p.video)
    assert 0.2 < joined / 400 < 0.6  # some sentences joined with their neighbours
    plain = data.positive(data.train, 0, None)
    assert plain.text == data.train[0].text and len(plain.video) == 2
    assert lengths / 400 < 2.0  # subsampling thins clips on average
    same = overlap_matrix(ex.positives)
    assert same.diagonal().all() and (same == same.T).all()
    # the contrastive loss gets more pairs than the joint pass; the joint pass's come first, unchanged
    again = data.sample_step(np.random.default_rng(1), batch_size=4, n_silent=0, n_contrastive=10)
    assert len(again.positives) == len(again.random_negative_videos) == 4 and len(again.contrastive) == 6
    spans = {(p.video_id, p.start, p.end) for p in again.positives + again.contrastive}
    assert len(spans) >= 9  # distinct windows (at most one repeat from augmentation joining neighbours)


def test_contrastive_windows_start_with_each_positives_visual_neighbours(tables):
    sentences, clips, tokens = tables
    data = PretrainData(sentences, clips, tokens, DataOptions(held_out_fraction=0.0))
    words = [set(tokens[w.clips].ravel().tolist()) for w in data.train]
    rng = np.random.default_rng(0)
    n = len(data.train)
    near, rand = [], []
    for i in range(n):
        picked = data.visual_neighbours(i, 2, rng, taken={i, (i + 1) % n})
        assert len(picked) == 2 and not {i, (i + 1) % n} & set(picked)
        w = data.train[i]
        assert not any(spans_overlap(w.video_id, w.start, w.end, data.train[j].video_id, data.train[j].start,
                                     data.train[j].end) for j in picked)
        near += [len(words[i] & words[j]) for j in picked]
        rand += [len(words[i] & words[int(j)]) for j in rng.choice(n, 2)]
    assert np.mean(near) > np.mean(rand) + 0.5, (np.mean(near), np.mean(rand))
    ex = data.sample_step(np.random.default_rng(1), batch_size=4, n_silent=0, n_contrastive=16, neighbours=2)
    assert len(ex.positives) == 4 and len(ex.contrastive) == 12
    by_span = {(w.video_id, w.start): set(tokens[w.clips].ravel().tolist()) for w in data.train}
    pos = [by_span[(p.video_id, p.start)] for p in ex.positives]
    first = [by_span[(p.video_id, p.start)] for p in ex.contrastive[:8]]  # two neighbours per positive, in order
    assert np.mean([len(pos[k // 2] & f) for k, f in enumerate(first)]) >= 2


def test_bad_tables_give_clear_errors(tables):
    sentences, clips, tokens = tables
    with pytest.raises(PretrainDataError, match="do not match"):
        PretrainData(sentences, clips, tokens[:-1])
    with pytest.raises(PretrainDataError, match="no sentence"):
        PretrainData([{"video_id": "elsewhere", "start": 0.0, "end": 1.0, "text": "x"}], clips, tokens)
    with pytest.raises(PretrainDataError, match="column"):
        PretrainData(pl.DataFrame({"video_id": ["v0"]}), clips, tokens)


def test_lr_schedule_warms_up_then_decays():
    f = [lr_factor(s, 10, 100) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[9:], f[10:], strict=False)) and f[-1] < 0.02


def _trainer(tok, tables, steps, **kw):
    sentences, clips, tokens = tables
    data = PretrainData(sentences, clips, tokens, DataOptions(held_out_fraction=0.15))
    opts = PretrainOptions(steps=steps, batch_size=6, warmup_steps=2, checkpoint_every=3, eval_every=3,
                           grad_accum=2, lr=1e-3, head_lr=1e-3, progress=False, **kw)
    return Pretrainer(tiny_model(tok, dropout=0.1), tok, data, opts)


def test_stop_and_resume_reproduces_the_uninterrupted_run(tok, tables, tmp_path):
    full = _trainer(tok, tables, 7).fit(tmp_path / "full")
    first = _trainer(tok, tables, 7).fit(tmp_path / "resumed", stop_at=3)
    assert len(first.history) == 3
    state = json.loads((tmp_path / "resumed" / "trainer_state.json").read_text())
    assert state["step"] == 3 and state["schedule"]["total_steps"] == 7
    rest = _trainer(tok, tables, 7).fit(tmp_path / "resumed")  # a fresh process would start like this
    assert rest.history == full.history  # every loss of every step, bit for bit
    assert rest.evals == full.evals and len(full.evals) == 3  # held-out at steps 3, 6 and 7
    assert set(LOSSES) | {"align_acc", "mlm_acc", "mvm_acc"} <= set(full.evals[-1])
    a = (tmp_path / "full" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "resumed" / "model.safetensors").read_bytes()


def test_tiny_archive_overfits(tok, tables):
    sentences, clips, tokens = tables
    data = PretrainData(sentences, clips, tokens, DataOptions(held_out_fraction=0.0))
    # every pair here is true, so none is left out as noisy: the model must fit them all
    opts = PretrainOptions(steps=500, batch_size=8, lr=2e-3, head_lr=2e-3, warmup_steps=10, eval_every=0,
                           noisy_pairs=0.0, progress=False)
    trainer = Pretrainer(tiny_model(tok, hidden=64), tok, data, opts)
    before = trainer.evaluate("train")
    trainer.fit()
    after = trainer.evaluate("train")
    for name in LOSSES:
        assert after[name] < 0.5 * before[name], (name, before[name], after[name])
    assert after["align_acc"] > 0.9
    assert after["mlm_acc"] > 0.8 and after["mvm_acc"] > 0.6


def test_small_loss_trick_leaves_out_the_worst_fitting_pairs():
    losses = torch.tensor([0.1, 5.0, 0.3, 0.2, 4.0, 0.4, 0.5, 0.6], requires_grad=True)
    mean = Pretrainer._small_loss_mean(losses, 0.25)  # 2 of 8 left out: the two chatter-like outliers
    assert mean.item() == pytest.approx((0.1 + 0.3 + 0.2 + 0.4 + 0.5 + 0.6) / 6)
    mean.backward()
    assert losses.grad[1] == 0 and losses.grad[4] == 0 and (losses.grad[[0, 2, 3, 5, 6, 7]] > 0).all()
    assert Pretrainer._small_loss_mean(losses, 0.0).item() == pytest.approx(losses.mean().item())


def test_contrastive_videos_hide_whole_feature_groups_never_all(tok, tables):
    trainer = _trainer(tok, tables, 1, itc_group_dropout=0.5)
    videos = [np.arange(i, i + 12).reshape(4, 3) % tok.n_visual_words for i in range(64)]
    batch = trainer._batch([None] * 64, videos)
    hidden = trainer._drop_groups(batch, torch.Generator().manual_seed(0))
    shown = hidden.attention_mask.bool()
    assert (shown[~batch.visual_mask] == batch.attention_mask.bool()[~batch.visual_mask]).all()  # specials stay
    per_group = torch.stack([(shown & (batch.group_ids == g)).any(1) for g in (1, 2, 3)], 1)  # (64, 3)
    for g in (1, 2, 3):  # a group is shown or hidden in every clip of a video alike
        words = batch.group_ids == g
        assert ((shown & words).sum(1) == per_group[:, g - 1] * words.sum(1)).all()
    assert per_group.any(1).all() and not per_group.all(1).all()  # never all hidden, sometimes some
    assert 0.3 < 1 - per_group.float().mean() < 0.6  # about half the groups hidden
    off = _trainer(tok, tables, 1, itc_group_dropout=0.0)._drop_groups(batch, torch.Generator())
    assert torch.equal(off.attention_mask, batch.attention_mask)


def test_a_wall_clock_budget_shortens_the_run_and_records_it_complete(tok, tables, tmp_path):
    from model.checkpoint import training_progress

    result = _trainer(tok, tables, 100_000, minutes=0.05).fit(tmp_path)  # 3 s for 100k steps
    done, total = training_progress(tmp_path)
    assert done == total == len(result.history) < 100_000  # shortened, and complete: an index run won't resume it
    assert result.seconds < 3 + 10  # stopped near the budget (slack: one step, the last eval and checkpoint)
    assert result.history[-1]["lr_factor"] < 0.5  # the schedule decayed towards the new end, not cut at peak


def test_workers_draw_the_same_steps_as_the_training_process(tok, tables):
    # a DataLoader worker draws a step's micro-batches from the same seeds: same losses, same weights
    one = _trainer(tok, tables, 3).fit()
    two = _trainer(tok, tables, 3, workers=2).fit()
    assert one.history == two.history

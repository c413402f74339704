import numpy as np
import pytest
from ingest_media import FRAME_SIZE, SPECS, VFR_TIMES, write_corpus

import indexer.decode as decode
from indexer.decode import (
    CLIP_FRAMES,
    CLIP_SECONDS,
    ClipReader,
    DecodeError,
    DecodeOptions,
    clip_count,
    n_samples,
)
from indexer.discover import probe
from vbsearch.synth import write_video

SPEC = {s.name: s for s in SPECS}
OUT_W, OUT_H = 80, 60


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def read_all(path, **kw):
    reader = ClipReader(path, DecodeOptions(OUT_W, OUT_H, **kw))
    batches = list(reader)
    frames = np.concatenate([b.frames for b in batches])
    starts = np.concatenate([b.starts for b in batches])
    ends = np.concatenate([b.ends for b in batches])
    valid = np.concatenate([b.valid for b in batches])
    return reader, batches, frames, starts, ends, valid


@pytest.mark.parametrize(
    "samples, clips",
    [(0, 0), (1, 1), (14, 1), (29, 1), (30, 1), (44, 1), (45, 2), (59, 2), (60, 2), (74, 2), (75, 3), (90, 3)],
)
def test_tail_rule(samples, clips):
    # A tail of >= 15 samples (0.75 s) becomes a clip; a video shorter than one clip always gives one.
    assert clip_count(samples) == clips


def test_samples_cover_the_duration():
    assert n_samples(1.5) == 30 and n_samples(1.51) == 31 and n_samples(0.01) == 1 and n_samples(0) == 0


@pytest.mark.parametrize("name", [s.name for s in SPECS])
def test_clip_counts_and_times_match_the_duration(corpus, name):
    spec = SPEC[name]
    path = corpus[name]
    reader, batches, frames, starts, ends, valid = read_all(path)
    container = probe(path).duration
    # The decoded duration agrees with the container to within a frame or two.
    assert reader.duration == pytest.approx(container, abs=0.1)
    if spec.frame_times is None:
        assert reader.duration == pytest.approx(spec.n_frames / spec.fps, abs=0.05)
    else:
        assert VFR_TIMES[-1] < reader.duration < VFR_TIMES[-1] + 0.15
    full, tail = divmod(reader.duration, CLIP_SECONDS)
    by_hand = int(full) + int(tail >= CLIP_SECONDS / 2 - 1e-6 or full == 0)
    assert reader.n_clips == len(frames) == by_hand
    if spec.expected_clips is not None:
        assert reader.n_clips == spec.expected_clips
    assert frames.shape == (reader.n_clips, CLIP_FRAMES, OUT_H, OUT_W, 3) and frames.dtype == np.uint8
    np.testing.assert_allclose(starts, np.arange(reader.n_clips) * CLIP_SECONDS)
    np.testing.assert_allclose(ends[:-1], starts[:-1] + CLIP_SECONDS)
    assert starts[-1] < ends[-1] <= reader.duration + 1e-9
    if tail >= CLIP_SECONDS / 2 or full == 0:  # a kept tail ends with the video
        assert ends[-1] == pytest.approx(reader.duration)
    assert [b.first_index for b in batches] == sorted({b.first_index for b in batches})
    assert reader.decoder == ("pyav" if "av1" in name else "decord")


def test_short_video_gives_one_padded_clip(corpus):
    reader, _, frames, starts, ends, valid = read_all(corpus["short.mp4"])
    assert reader.n_clips == 1 and valid[0] == 20  # 1.0 s = 20 samples
    assert (starts[0], ends[0]) == (0.0, pytest.approx(1.0))
    # Padding repeats the last real frame.
    assert np.array_equal(frames[0, 20:], np.repeat(frames[0, 19:20], 10, axis=0))
    assert not np.array_equal(frames[0, 0], frames[0, 19])


def test_tail_clip_is_padded_and_dropped_tail_is_not_decoded(corpus):
    _, _, frames, _, ends, valid = read_all(corpus["h264_25.mp4"])  # 4.0 s: tail of 20 samples kept
    assert valid.tolist() == [30, 30, 20] and ends[-1] == pytest.approx(4.0)
    assert np.array_equal(frames[2, 20:], np.repeat(frames[2, 19:20], 10, axis=0))
    _, _, _, _, ends, valid = read_all(corpus["h264_24.mkv"])  # 3.29 s: tail of 6 samples dropped
    assert valid.tolist() == [30, 30] and ends[-1] == pytest.approx(3.0)


@pytest.mark.parametrize("decoder", ["decord", "pyav"])
def test_vfr_samples_show_the_frame_on_screen(tmp_path, decoder):
    """Each 20 fps sample shows the last frame whose time is <= the sample's time."""
    levels = 20 + 3 * np.arange(len(VFR_TIMES))  # frame i is a flat grey of level 20 + 3 i
    frames = [np.full((*FRAME_SIZE, 3), v, np.uint8) for v in levels]
    path = write_video(tmp_path / "vfr_levels.mp4", frames, fps=25, frame_times=VFR_TIMES, crf=0)
    reader, _, got, _, _, valid = read_all(path, decoder=decoder)
    assert reader.decoder == decoder
    grey = got.reshape(-1, OUT_H, OUT_W, 3).mean(axis=(1, 2, 3))
    real = np.concatenate([np.arange(v) + i * CLIP_FRAMES for i, v in enumerate(valid)])
    t = real / 20
    expected = levels[np.searchsorted(np.asarray(VFR_TIMES), t + 1e-6, side="right") - 1]
    assert np.abs(grey[real] - expected).max() <= 2.0


def test_chunking_does_not_change_the_clips(corpus):
    _, b1, f1, s1, e1, _ = read_all(corpus["h264_25.mp4"], chunk_clips=1)
    _, b8, f8, s8, e8, _ = read_all(corpus["h264_25.mp4"], chunk_clips=8)
    assert [len(b) for b in b1] == [1, 1, 1] and [len(b) for b in b8] == [3]
    assert np.array_equal(f1, f8) and np.array_equal(s1, s8) and np.array_equal(e1, e8)


def test_decoders_agree(corpus):
    _, _, fd, sd, ed, _ = read_all(corpus["h264_25.mp4"], decoder="decord")
    _, _, fp, sp, ep, _ = read_all(corpus["h264_25.mp4"], decoder="pyav")
    assert fd.shape == fp.shape and np.array_equal(sd, sp)
    np.testing.assert_allclose(ed, ep, atol=0.05)
    # Same frames up to the two scalers' rounding: a one-frame offset would differ by far more.
    assert np.abs(fd.astype(float) - fp.astype(float)).mean() < 4


def test_decord_failure_mid_file_resumes_with_pyav(corpus, monkeypatch):
    real = decode._decord_samples

    def flaky(path, opts, skip):
        source = real(path, opts, skip)
        yield next(source)
        raise RuntimeError("simulated decord crash")

    monkeypatch.setitem(decode._BACKENDS, "decord", flaky)
    reader, batches, frames, starts, _, _ = read_all(corpus["h264_25.mp4"], chunk_clips=1)
    assert reader.decoder == "pyav" and "simulated decord crash" in reader.fallback_reason
    assert reader.n_clips == 3 and [b.first_index for b in batches] == [0, 1, 2]
    _, _, reference, _, _, _ = read_all(corpus["h264_25.mp4"], decoder="pyav")
    assert np.abs(frames[1:].astype(float) - reference[1:].astype(float)).max() == 0


def test_unreadable_file_raises_decode_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    with pytest.raises(DecodeError, match="decord: .*; pyav: "):
        list(ClipReader(bad, DecodeOptions(OUT_W, OUT_H)))


def test_unknown_decoder_is_rejected(corpus):
    with pytest.raises(ValueError, match="decoder must be one of"):
        ClipReader(corpus["short.mp4"], DecodeOptions(OUT_W, OUT_H, decoder="ffmpeg"))

import wave
from pathlib import Path

import numpy as np
import pytest

from indexer.audio import SAMPLE_RATE, AudioError, load_audio
from vbsearch import synth

TONE_AT_S = 1.5  # seconds: where the beep starts
DURATION_S = 4.0


def _beep_track(rate: int = SAMPLE_RATE) -> np.ndarray:
    track = np.zeros(int(DURATION_S * rate), np.float32)
    n = int(0.2 * rate)
    start = int(TONE_AT_S * rate)
    track[start:start + n] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(n) / rate)
    return track


def _onset(samples: np.ndarray) -> float:
    return float(np.argmax(np.abs(samples) > 0.1)) / SAMPLE_RATE


@pytest.mark.parametrize("suffix,codec", [(".mp4", "libx264"), (".mkv", "libx264"), (".webm", "libvpx"),
                                          (".avi", "mpeg4")])
def test_containers_decode_to_16k_mono_float_on_the_file_clock(tmp_path: Path, suffix, codec):
    path = synth.write_video(tmp_path / f"v{suffix}", synth.moving_square(int(DURATION_S * 25)), fps=25,
                             audio=_beep_track(), codec=codec)
    audio = load_audio(path)
    assert audio.skipped_reason is None and audio.sample_rate == SAMPLE_RATE
    assert audio.samples.dtype == np.float32 and audio.samples.ndim == 1
    assert abs(audio.duration - DURATION_S) < 0.15
    assert abs(_onset(audio.samples) - TONE_AT_S) < 0.08  # codec delay (mp3 in avi) stays small
    assert np.abs(audio.samples).max() <= 1.0


def test_stereo_44k_is_resampled_and_downmixed(tmp_path: Path):
    rate = 44_100
    mono = _beep_track(rate)
    stereo = np.stack([mono, mono], axis=1)
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((stereo * 32767).astype("<i2").tobytes())
    audio = load_audio(path)
    assert abs(audio.duration - DURATION_S) < 0.01
    assert abs(_onset(audio.samples) - TONE_AT_S) < 0.01
    beep = audio.samples[int(TONE_AT_S * SAMPLE_RATE):int((TONE_AT_S + 0.2) * SAMPLE_RATE)]
    spectrum = np.abs(np.fft.rfft(beep))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(beep)
    assert abs(peak_hz - 440) < 10  # resampled, not just relabelled
    # FFmpeg downmix, as `ffmpeg -ac 1` that openai-whisper uses: channels summed at -3 dB each.
    assert np.abs(beep).max() == pytest.approx(0.5 * np.sqrt(2), abs=0.03)


def test_video_without_audio_is_skipped_with_a_reason(tmp_path: Path):
    path = synth.write_video(tmp_path / "silent.mp4", synth.moving_square(10), fps=25)
    audio = load_audio(path)
    assert audio.samples.size == 0 and audio.samples.dtype == np.float32
    assert audio.skipped_reason == "no audio stream"


def test_unreadable_file_raises_a_clear_error(tmp_path: Path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00not a video at all" * 100)
    with pytest.raises(AudioError, match="broken.mp4"):
        load_audio(bad)
    with pytest.raises(AudioError, match="cannot open"):
        load_audio(tmp_path / "missing.mp4")


def test_audio_starting_before_the_video_is_put_on_the_video_clock(tmp_path: Path):
    """Audio from t=0, first video frame at t=1.0 s: a beep at audio 1.5 s is at 0.5 s on the clip clock."""
    import av

    path = tmp_path / "offset.mkv"
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width = v.height = 32
        v.pix_fmt = "yuv420p"
        a = c.add_stream("aac", rate=SAMPLE_RATE)
        a.layout = "mono"
        for i in range(50):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            frame.pts = 25 + i  # time base 1/25: the video starts at 1.0 s
            for packet in v.encode(frame):
                c.mux(packet)
        for packet in v.encode():
            c.mux(packet)
        track = _beep_track()
        af = av.AudioFrame.from_ndarray(track.reshape(1, -1), format="flt", layout="mono")
        af.sample_rate, af.pts = SAMPLE_RATE, 0
        resampler = av.AudioResampler(format=a.format.name, layout="mono", rate=SAMPLE_RATE, frame_size=a.frame_size)
        for chunk in (*resampler.resample(af), *resampler.resample(None)):
            for packet in a.encode(chunk):
                c.mux(packet)
        for packet in a.encode():
            c.mux(packet)
    audio = load_audio(path)
    assert abs(_onset(audio.samples) - (TONE_AT_S - 1.0)) < 0.03

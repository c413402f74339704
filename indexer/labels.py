"""Window labels for fine-tuning: labels.csv, and the sample archive's truth as labels.

labels.csv has a header and one row per labelled window:
    video   a catalogued video: its video id or its file's path (a relative path is read against
            the CSV's folder first, then the working directory)
    start   window start, seconds
    end     window end, seconds
    label   the class name
`write_labels(archive)` derives one from a sample archive's truth.json (vbsearch.samplegen): one
row per scene, labelled with the scene's direction of motion (its "action", the default) or
another attribute such as its shape (its "object").
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LABELS_FILE = "labels.csv"  # in the sample archive's folder, beside truth.json
FIELDS = ("video", "start", "end", "label")
ATTRIBUTES = ("direction", "shape", "colour", "background")  # scene attributes of truth.json
DEFAULT_ATTRIBUTE = "direction"  # the action: what the object does


class LabelsError(ValueError):
    """A labels file or a truth file cannot be read as labelled windows."""


@dataclass(frozen=True)
class LabelRow:
    video: str  # video id or path, as written in the file
    start: float  # s
    end: float  # s
    label: str


def labels_from_truth(scenes: Sequence[dict], attribute: str = DEFAULT_ATTRIBUTE) -> list[LabelRow]:
    """One row per scene of truth.json; videos as paths relative to the archive folder."""
    if attribute not in ATTRIBUTES:
        raise LabelsError(f"attribute must be one of {', '.join(ATTRIBUTES)}, not {attribute!r}")
    return [LabelRow(f"videos/{s['video']}", float(s["start"]), float(s["end"]), str(s[attribute])) for s in scenes]


def write_rows(path: Path, rows: Sequence[LabelRow]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(FIELDS)
        writer.writerows((r.video, f"{r.start:.3f}", f"{r.end:.3f}", r.label) for r in rows)
    return path


def write_labels(archive: Path, attribute: str = DEFAULT_ATTRIBUTE) -> Path:
    """Write ARCHIVE/labels.csv from ARCHIVE/truth.json; returns its path."""
    truth = Path(archive) / "truth.json"
    if not truth.is_file():
        raise LabelsError(f"{truth} is missing (make an archive with python -m vbsearch.samplegen)")
    return write_rows(Path(archive) / LABELS_FILE, labels_from_truth(json.loads(truth.read_text()), attribute))


def read_labels(path: Path) -> list[LabelRow]:
    """The rows of a labels CSV, checked: the four columns, numeric times with end > start, a label."""
    path = Path(path)
    if not path.is_file():
        raise LabelsError(f"{path}: no such file")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = set(FIELDS) - set(reader.fieldnames or ())
        if missing:
            raise LabelsError(f"{path}: missing column(s) {', '.join(sorted(missing))} (need {', '.join(FIELDS)})")
        rows = []
        for line, rec in enumerate(reader, 2):
            try:
                start, end = float(rec["start"]), float(rec["end"])
            except (TypeError, ValueError):
                raise LabelsError(f"{path}:{line}: start and end must be numbers") from None
            label, video = (rec["label"] or "").strip(), (rec["video"] or "").strip()
            if not (math.isfinite(start) and math.isfinite(end)) or end <= start or start < 0:
                raise LabelsError(f"{path}:{line}: need 0 <= start < end, got {start}, {end}")
            if not label or not video:
                raise LabelsError(f"{path}:{line}: empty video or label")
            rows.append(LabelRow(video, start, end, label))
    if not rows:
        raise LabelsError(f"{path}: no rows")
    return rows


def resolve_video(catalog, video: str, base: Path | None = None) -> str | None:
    """The video id of a row's video (an id, a path, or a path relative to `base`), None if not catalogued."""
    if base is not None and not Path(video).is_absolute():
        found = catalog.find_video(str(Path(base) / video))
        if found is not None:
            return found
    return catalog.find_video(video)

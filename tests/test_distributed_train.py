"""Pretraining sized to the archive, and data-parallel under torchrun (gloo on CPU)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from test_train_command import _write_catalog

from indexer.train import MAX_STEPS, MIN_STEPS, PASSES, step_budget
from vbsearch.cli import main


def test_the_budget_is_passes_over_the_archive_within_a_floor_and_a_ceiling():
    three_minutes = step_budget(22, 10)  # the demo archive: 22 narrated windows, 8 + 2 silent per step
    assert three_minutes.steps == -(-PASSES * 22 // 10) and str(PASSES) in three_minutes.why
    assert step_budget(160, 10).steps == pytest.approx(400, abs=20)  # a 20-minute sample archive: as measured
    assert step_budget(1_000, 10).steps > step_budget(160, 10).steps  # more footage, more steps
    assert step_budget(1_000, 40).steps == step_budget(1_000, 10).steps // 4  # a bigger batch, fewer steps
    tiny = step_budget(2, 10)
    assert tiny.steps == MIN_STEPS and "floor" in tiny.why
    huge = step_budget(10**8, 10)
    assert huge.steps == MAX_STEPS and "ceiling" in huge.why


def _history(data_dir) -> list[dict]:
    return json.loads((data_dir / "model" / "trainer_state.json").read_text())["history"]


@pytest.mark.slow
def test_two_processes_under_torchrun_train_as_one_and_resume_with_one(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    _write_catalog(one)
    shutil.copytree(one, two)
    flags = ["--device", "cpu", "--batch-size", "3", "--max-len", "24", "--threads", "1", "--grad-accum", "2",
             "--checkpoint-every", "1"]
    assert main(["train", "--data-dir", str(one), "--steps", "4", *flags]) == 0
    shutil.copytree(one / "vocab", two / "vocab")  # the same visual words, so the runs can be compared

    # the same global batch (2 micro-batches of 3) over 2 processes: rank 0 writes, once
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "vbsearch.cli", "train", "--data-dir", str(two), "--steps", "2", *flags],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("model saved to") == 1 and "x 2 processes" in run.stderr
    assert sorted(p.name for p in (two / "model").iterdir() if p.suffix == ".tmp" or ".tmp" in p.name) == []
    state = json.loads((two / "model" / "trainer_state.json").read_text())
    assert state["step"] == 2
    # resumed with one process, to the end
    assert main(["train", "--data-dir", str(two), "--steps", "4", *flags]) == 0

    ref, got = _history(one), _history(two)
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    for a, b in zip(ref, got, strict=True):
        for key in ("loss", "mlm", "mvm", "align", "itc", "itc_words", "grad_norm"):
            assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (a["step"], key)

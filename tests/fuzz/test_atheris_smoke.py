"""The atheris harness runs (when atheris is installed: `pip install -e '.[fuzz]'`, or `make fuzz`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("atheris")

ROOT = Path(__file__).resolve().parents[2]


def test_the_harness_runs_a_bounded_number_of_inputs_without_a_crash(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    result = subprocess.run(
        [sys.executable, "-m", "tests.fuzz.fuzz_decoders", "-runs=3000", "-seed=1", str(corpus)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Done 3000 runs" in result.stderr
    assert len(list(corpus.iterdir())) > 10, "seeded with valid frames"

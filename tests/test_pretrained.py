"""The committed pretrained runs in saved_models/ work as the README says, right after install."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from exporters import runtime

SAVED = Path(__file__).resolve().parents[1] / "saved_models"
RUNS = {"gan-mnist5k": 0, "cgan-mnist5k": 10, "vae-mnist5k": 0}


@pytest.mark.parametrize("run, num_classes", RUNS.items())
def test_pretrained_artifacts_generate_digits(run, num_classes):
    folder = SAVED / run
    scores = json.loads((folder / "eval.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    assert config["status"] == "finished" and config["dataset"] == "mnist5k"
    assert scores  # written by `zoo eval` in tools/train_pretrained.sh
    labels = [7] * 8 if num_classes else None
    found = {}
    for artifact in ("generator.onnx", "generator-b1.tflite"):
        generator = runtime.load(folder / "export" / artifact)  # checks sha256 against manifest
        images = generator.generate(8, labels=labels, seed=0)
        assert images.dtype == np.uint8 and images.shape == (8, 28, 28, 1)
        # trained digits: dark background with bright strokes
        assert 0.05 < np.mean(images > 127) < 0.4
        # another seed gives another digit in every slot (measured: 17-56 grey levels apart)
        other = generator.generate(8, labels=labels, seed=1)
        apart = np.abs(images.astype(int) - other).reshape(8, -1).mean(axis=1)
        assert np.all(apart > 8), apart
        found[artifact] = images.astype(int)
    # the two runtimes agree on the same seed (rounding to uint8 aside)
    assert np.abs(found["generator.onnx"] - found["generator-b1.tflite"]).max() <= 1


def test_zoo_sample_on_a_pretrained_run(tmp_path):
    zoo_script = Path(sys.executable).with_name("zoo")
    out = tmp_path / "sevens.png"
    result = subprocess.run(
        [str(zoo_script), "sample", str(SAVED / "cgan-mnist5k"), "--n", "16", "--labels", "7",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

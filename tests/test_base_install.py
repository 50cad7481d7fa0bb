"""The base install (`pip install .`, no extras) is the TF-free tier and serves artifacts.

Builds a fresh venv (tools/check_base_install.py), so it needs the package index and takes
about half a minute with a warm pip cache: full tier only.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_base_install_has_no_tensorflow_and_samples_and_serves(tmp_path):
    out = tmp_path / "base_install.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "check_base_install.py"), "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["ok"] and report["venv_mb"] < 300
    assert not {"tensorflow", "keras", "tf2onnx"} & set(report["packages"])
    assert {"numpy", "onnxruntime", "pillow"} <= set(report["packages"])

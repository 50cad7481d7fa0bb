"""`import zoo` registers the families whenever Keras is imported, and the CLI keeps
TensorFlow's start-up lines off stderr: both through zoo.import_hooks, checked in fresh
interpreters (the order of imports is the point)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

REGISTERED = (
    "import keras; "
    "names = ['zoo>GAN', 'zoo>CGAN', 'zoo>VAE', 'zoo>CVAE', 'zoo>WGANGP', 'zoo>DDPM', 'zoo>CDDPM']; "
    "missing = [n for n in names if keras.saving.get_registered_object(n) is None]; "
    "assert not missing, missing; print('ok')"
)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=180
    )


SLOW = pytest.mark.slow  # each a Python that imports TensorFlow (~5 s): fast tier keeps one


@pytest.mark.parametrize("before", [
    "import keras, zoo",                                   # the documented order
    pytest.param("import zoo, tensorflow, keras", marks=SLOW),  # zoo first, Keras later
    pytest.param(  # a bare check
        "import zoo, importlib.util; importlib.util.find_spec('keras'); import keras", marks=SLOW),
    # a family module first: families that need the half-imported one register on the next
    # registry call (here list_models), see zoo.registry.register_all
    pytest.param("import zoo; from zoo import gan; zoo.list_models()", marks=SLOW),
])
def test_families_are_registered_whatever_the_import_order(before):
    result = run_python(f"{before}; {REGISTERED}")
    assert result.stdout.strip() == "ok", result.stderr[-2000:]


def test_import_zoo_alone_loads_no_tensorflow():
    result = run_python("import sys, zoo; print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    assert result.stdout.strip() == "False False", result.stderr[-2000:]


@pytest.mark.slow  # two `zoo list` processes that import TensorFlow
def test_cli_keeps_tensorflow_start_up_lines_off_stderr_unless_asked():
    code = "import sys, zoo.cli; sys.exit(zoo.cli.main(sys.argv[1:]))"
    quiet = subprocess.run([sys.executable, "-c", code, "list"], capture_output=True, text=True,
                           cwd=ROOT, timeout=180, env={"PATH": "/usr/bin:/bin"})
    assert quiet.returncode == 0 and "models:" in quiet.stdout
    assert quiet.stderr == "", quiet.stderr
    loud = subprocess.run([sys.executable, "-c", code, "--tf-logs", "list"], capture_output=True,
                          text=True, cwd=ROOT, timeout=180, env={"PATH": "/usr/bin:/bin"})
    assert loud.returncode == 0 and "absl::InitializeLog" in loud.stderr

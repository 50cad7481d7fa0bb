"""The layering contract (DESIGN.md), checked on the source so a wrong import fails here.

- TF-free tier (modules directly in exporters/): stdlib, numpy, ONNX Runtime, LiteRT, Pillow,
  the serving stack and other TF-free modules; never TensorFlow, Keras, tf2onnx, the
  converters or zoo.
- converters (exporters/converters/): the TF stack and the TF-free tier, never zoo.
- zoo's model code (everything in zoo/ but the composition layer): the TF-free tier only.
- zoo's composition layer (cli, train): may call the converters, through `exporters.export`.
- compat (exporters/compat.py, the one home of private Keras / tf2onnx / LiteRT / uvicorn uses):
  a leaf every layer may import, because it loads nothing when imported: it imports no genzoo
  module and, at module level, the standard library only (its private targets inside functions).

Every import statement counts, at module level or inside a function.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TF_FREE_THIRD_PARTY = {
    "numpy", "onnxruntime", "ai_edge_litert", "PIL",
    "starlette", "uvicorn", "anyio", "h11", "httptools", "multipart", "python_multipart",
}
ZOO_COMPOSITION = {"zoo.cli", "zoo.train"}
COMPAT = "exporters.compat"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules_under(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def imports_of(path: Path) -> list[tuple[str, bool]]:
    """(imported module, inside a function?) for every import statement in the file."""
    tree = ast.parse(path.read_text(), str(path))
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((alias.name, nested) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                found.append((child.module, nested))
                # `from exporters import runtime` imports the submodule exporters.runtime
                found.extend((f"{child.module}.{alias.name}", nested) for alias in child.names)
            visit(child, nested)

    visit(tree, False)
    return found


def tier_of(name: str) -> str:
    if name == COMPAT:
        return "compat"
    if name.startswith("exporters.converters") or name in {
        f"exporters.{m}" for m in ("saved_model", "tflite", "onnx", "verify", "export")
    }:
        return "converters"
    if name == "exporters" or name.startswith("exporters."):
        return "tf_free"
    if name == "zoo" or name.startswith("zoo."):
        return "zoo"
    return "other"


def is_genzoo_module(name: str) -> bool:
    """A name that is a real genzoo module (not `from exporters import FORMATS`)."""
    parts = name.split(".")
    path = ROOT.joinpath(*parts)
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def violations(path: Path) -> list[str]:
    me = module_name(path)
    bad = []
    for name, in_function in imports_of(path):
        top = name.split(".")[0]
        if top in ("zoo", "exporters") and not is_genzoo_module(name):
            continue  # an attribute (`from exporters import FORMATS`), checked via its module
        target = tier_of(name)
        if me == COMPAT:
            if target != "other":
                bad.append(f"{me} (compat, a leaf) imports the genzoo module {name}")
            elif not in_function and top not in sys.stdlib_module_names | {"__future__"}:
                bad.append(f"{me} (compat) imports {name} at module level, not inside a function")
        elif me.startswith("exporters.converters"):
            if target == "zoo":
                bad.append(f"{me} (converter) imports {name}: converters never import zoo")
        elif me.startswith("exporters"):
            if target == "zoo":
                bad.append(f"{me} (TF-free tier) imports {name}")
            elif target == "converters" and not (me == "exporters" and in_function):
                bad.append(f"{me} (TF-free tier) imports the converter {name}")
            elif target == "other" and top not in sys.stdlib_module_names and (
                top not in TF_FREE_THIRD_PARTY
            ):
                bad.append(f"{me} (TF-free tier) imports {name}")
        elif me.startswith("zoo") and me not in ZOO_COMPOSITION:
            if target == "converters":
                bad.append(f"{me} (zoo model code) imports the converter {name}")
    return bad


def all_modules() -> list[Path]:
    return modules_under("zoo") + modules_under("exporters")


@pytest.mark.parametrize("path", all_modules(), ids=lambda p: module_name(p))
def test_imports_follow_the_layers(path):
    assert violations(path) == []


def test_the_checker_catches_wrong_imports(tmp_path, monkeypatch):
    """The rules above are not vacuous: each kind of wrong import is reported."""
    cases = {
        "exporters/bad_runtime.py": "import tensorflow\n",
        "exporters/bad_server.py": "def f():\n    from zoo import base\n",
        "exporters/converters/bad.py": "import zoo.gan\n",
        "zoo/bad_model.py": "from exporters.converters import onnx\n",
        "exporters/compat.py": "import keras\n\ndef f():\n    from exporters import sampling\n",
    }
    for relative, text in cases.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for name in ("zoo/gan.py", "zoo/base.py", "exporters/converters/onnx.py",
                 "exporters/sampling.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    for relative in cases:
        assert violations(tmp_path / relative), relative
    assert len(violations(tmp_path / "exporters/compat.py")) == 2
    assert violations(tmp_path / "zoo/gan.py") == []
    allowed = {
        "zoo/gan.py": "from exporters import compat\n",
        "exporters/converters/onnx.py": "from exporters import compat\n",
        "exporters/sampling.py": "from exporters import compat\n",
        "exporters/compat.py": "import inspect\n\ndef f():\n    from keras.src import export\n",
    }
    for relative, text in allowed.items():
        (tmp_path / relative).write_text(text)
        assert violations(tmp_path / relative) == [], relative


def test_no_import_circle_between_zoo_and_exporters():
    for path in modules_under("exporters"):
        assert not any(tier_of(name) == "zoo" for name, _ in imports_of(path)), path


TF_FREE_PROBE = """
import sys
import exporters, zoo, zoo.cli
from exporters import {modules}
heavy = sorted(m for m in ("tensorflow", "keras", "tf2onnx", "onnx") if m in sys.modules)
assert not heavy, heavy
print("ok")
"""


def test_tf_free_tier_and_cli_import_without_tensorflow():
    """Where TensorFlow is installed, the TF-free tier and the CLI module still never load it."""
    names = sorted(
        module_name(p).split(".")[-1]
        for p in (ROOT / "exporters").glob("*.py")
        if p.name != "__init__.py"
    )
    result = subprocess.run(
        [sys.executable, "-c", TF_FREE_PROBE.format(modules=", ".join(names))],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]

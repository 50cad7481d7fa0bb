"""Run code around the first import of a module, whenever (and by whomever) it happens.

`import zoo` registers the families with Keras right after Keras is first imported, and the
CLI silences TensorFlow's start-up lines while TensorFlow is first imported; neither imports the
module itself, so commands that never need TensorFlow never load it. Stdlib only.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys


class _FirstImport(importlib.abc.MetaPathFinder):
    def __init__(self, name, around):
        self.name, self.around = name, around

    def find_spec(self, name, path=None, target=None):
        if name != self.name:
            return None
        sys.meta_path.remove(self)  # once; find_spec below must not find this finder again
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module
        spec.loader.exec_module = lambda module: self.around(exec_module, module)
        return spec


def around_first_import(name: str, around) -> bool:
    """Make the first `import name` run `around(exec_module, module)`, which must call
    `exec_module(module)`. False (and nothing installed) when `name` is already imported or
    not installed."""
    if name in sys.modules or importlib.util.find_spec(name) is None:
        return False
    sys.meta_path.insert(0, _FirstImport(name, around))
    return True

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
    """Wraps the loader of every spec found for `name` until one of them really executes: a
    bare `importlib.util.find_spec(name)` (TensorFlow makes such checks) must not use it up."""

    def __init__(self, name, around):
        self.name, self.around = name, around
        self.searching = False

    def find_spec(self, name, path=None, target=None):
        if name != self.name or self.searching:
            return None
        self.searching = True  # the find_spec below asks every finder again, this one included
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self.searching = False
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_around(module):
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            self.around(exec_module, module)

        spec.loader.exec_module = exec_around
        return spec


def around_first_import(name: str, around) -> bool:
    """Make the first `import name` run `around(exec_module, module)`, which must call
    `exec_module(module)`. False (and nothing installed) when `name` is already imported or
    not installed."""
    if name in sys.modules or importlib.util.find_spec(name) is None:
        return False
    sys.meta_path.insert(0, _FirstImport(name, around))
    return True

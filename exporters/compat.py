"""The one place genzoo touches private Keras / tf2onnx / LiteRT APIs.

Each function here receives the object it pokes (a model class, a model, an interpreter) or
imports the private module inside itself, so this module imports nothing at load time: the
TF-free tier (for the uvicorn protocol), zoo's model code, the converters and zoo's
composition layer may all import it. tests/test_compat.py checks every function against the installed
versions and fails with the version that broke it; when an upgrade changes one of these
private APIs, fix it here and nowhere else.

The uses, and why no public route exists (Keras 3.15, LiteRT 2.3, tf2onnx 1.17):

- `patch_tf2onnx`: Keras ships numpy-2 fixes for tf2onnx 1.17 in `keras.src.export` and
  applies them only inside `model.export(format="onnx")`; genzoo calls tf2onnx itself.
- `build_without_reading_a_batch`: under a tf.distribute strategy Keras' TF trainer reads and
  reduces a batch in `Model._maybe_symbolic_build` before `fit`, which MultiWorkerMirrored
  rejects; zoo models are built in `__init__`, so they need no batch.
- `set_initial_epoch`: the hook `keras.callbacks.BackupAndRestore` itself uses to make `fit`
  resume at a restored epoch (`model._initial_epoch`).
- `litert_op_names`: LiteRT lists a model's operators only through `_get_ops_details`.
- `HeaderDeadlineH11Protocol`: uvicorn has no deadline for a request's headers (slowloris) and
  answers malformed requests in plain text; `zoo serve` subclasses its h11 protocol for both,
  which touches uvicorn's internals (`conn`, `cycle`, `on_response_complete`, ...).

The TF-free tier may import this module too (it loads nothing at import); `zoo serve` does, for
the uvicorn protocol, built on first access.
"""

from __future__ import annotations


def _versions(*distributions: str) -> str:
    from importlib import metadata

    found = []
    for name in distributions:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            found.append(f"{name} (not installed)")
    return ", ".join(found)


class PrivateAPIChanged(RuntimeError):
    """A private API genzoo relies on is gone or changed in the installed version."""

    def __init__(self, what: str, expected: str, distributions: tuple[str, ...]):
        super().__init__(
            f"{what}: expected {expected}, which {_versions(*distributions)} does not provide; "
            "update exporters/compat.py for this version (or pin the version its tests pass with)"
        )


# ---- tf2onnx: Keras' numpy-2 patch ------------------------------------------------------------
TF2ONNX_PATCH = "keras.src.export.tf2onnx_lib.patch_tf2onnx"


def tf2onnx_patch():
    """Keras' `patch_tf2onnx` function, or PrivateAPIChanged naming the Keras version."""
    try:
        from keras.src.export.tf2onnx_lib import patch_tf2onnx as patch
    except ImportError as error:
        raise PrivateAPIChanged(
            f"cannot import {TF2ONNX_PATCH} ({error})", "that function", ("keras", "tf2onnx")
        ) from error
    if not callable(patch):
        raise PrivateAPIChanged(
            f"{TF2ONNX_PATCH} is a {type(patch).__name__}", "a callable", ("keras", "tf2onnx")
        )
    return patch


def patch_tf2onnx(required: bool = False) -> bool:
    """Apply Keras' numpy-2 fixes for tf2onnx (what `model.export(format="onnx")` applies).

    Returns whether the patch was applied. A Keras without it leaves tf2onnx as is (a later
    tf2onnx is expected to work unpatched), unless `required`, then PrivateAPIChanged.
    """
    import warnings

    try:
        patch = tf2onnx_patch()
    except PrivateAPIChanged:
        if required:
            raise
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        patch()
    return True


# ---- Keras trainer: no batch read to build a model that is built already ------------------------
SYMBOLIC_BUILD_HOOK = "_maybe_symbolic_build"


def symbolic_build_hook(model_class):
    """The trainer method Keras calls before fit/evaluate/predict to build from a batch."""
    import inspect

    hook = getattr(model_class, SYMBOLIC_BUILD_HOOK, None)
    parameters = set(inspect.signature(hook).parameters) if callable(hook) else set()
    if not {"iterator", "data_batch"} <= parameters:
        raise PrivateAPIChanged(
            f"{model_class.__name__}.{SYMBOLIC_BUILD_HOOK} is "
            f"{'missing' if hook is None else inspect.signature(hook)}",
            "a method (self, iterator=None, data_batch=None)",
            ("keras", "tensorflow"),
        )
    return hook


def is_fully_built(model) -> bool:
    """The model and every layer it tracks, its networks' layers included, are built (what
    Keras checks before building from a batch, through public attributes only)."""
    pending = [model]
    while pending:
        layer = pending.pop()
        if not layer.built:
            return False
        pending.extend(getattr(layer, "layers", ()))
    return True


def build_without_reading_a_batch(model_class):
    """Class decorator: fit/evaluate under a strategy read no batch to build a built model.

    Keras' TF trainer builds a model from the first batch, reducing it with
    strategy.reduce("MEAN", (images, labels)), which MultiWorkerMirroredStrategy rejects
    ("Attempt to convert a value (PerReplica...)"). A model built in `__init__` whose
    optimizers are built in `compile` needs no batch: Keras is handed none.
    """
    parent = symbolic_build_hook(model_class)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if is_fully_built(self):
            iterator = data_batch = None
        return parent(self, iterator=iterator, data_batch=data_batch)

    _maybe_symbolic_build.__qualname__ = f"{model_class.__qualname__}.{SYMBOLIC_BUILD_HOOK}"
    _maybe_symbolic_build.__doc__ = build_without_reading_a_batch.__doc__
    setattr(model_class, SYMBOLIC_BUILD_HOOK, _maybe_symbolic_build)
    return model_class


# ---- Keras trainer: resume fit at a restored epoch --------------------------------------------
INITIAL_EPOCH = "_initial_epoch"


def set_initial_epoch(model, epoch: int) -> None:
    """Make the model's running (or next) `fit` start at `epoch`, as BackupAndRestore does.

    Called from a callback's `on_train_begin`; Keras' trainer reads it right after.
    """
    if not hasattr(model, INITIAL_EPOCH):
        raise PrivateAPIChanged(
            f"{type(model).__name__} has no {INITIAL_EPOCH} attribute",
            "keras.Model._initial_epoch (read by fit to resume at a restored epoch)",
            ("keras",),
        )
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 0:
        raise ValueError(f"epoch must be an integer >= 0, got {epoch!r}")
    setattr(model, INITIAL_EPOCH, epoch)


# ---- LiteRT: the operators a model uses -------------------------------------------------------
LITERT_OPS_DETAILS = "_get_ops_details"


def litert_op_names(interpreter) -> list[str]:
    """Sorted names of the operators an `ai_edge_litert` Interpreter's model runs."""
    details = getattr(interpreter, LITERT_OPS_DETAILS, None)
    if not callable(details):
        raise PrivateAPIChanged(
            f"{type(interpreter).__name__} has no {LITERT_OPS_DETAILS}()",
            "Interpreter._get_ops_details() -> [{'op_name': ...}, ...]",
            ("ai-edge-litert",),
        )
    ops = details()
    try:
        return sorted({str(op["op_name"]) for op in ops})
    except (TypeError, KeyError) as error:
        raise PrivateAPIChanged(
            f"Interpreter.{LITERT_OPS_DETAILS}() returned {type(ops).__name__} without "
            f"'op_name' entries ({error!r})",
            "a list of dicts with 'op_name'",
            ("ai-edge-litert",),
        ) from error


# ---- uvicorn: a deadline for request headers, JSON for malformed requests ----------------------
H11_PROTOCOL = "uvicorn.protocols.http.h11_impl.H11Protocol"
H11_HOOKS = ("connection_made", "connection_lost", "on_response_complete", "send_400_response")
H11_STATE = ("self.conn", "self.cycle", "self.transport", "self.loop")


def h11_protocol_base():
    """uvicorn's H11Protocol, checked for the hooks and state the subclass below relies on."""
    import inspect

    try:
        from uvicorn.protocols.http.h11_impl import H11Protocol
    except ImportError as error:
        raise PrivateAPIChanged(f"cannot import {H11_PROTOCOL} ({error})", "that class",
                                ("uvicorn", "h11")) from error
    missing = [name for name in H11_HOOKS if not callable(getattr(H11Protocol, name, None))]
    source = inspect.getsource(H11Protocol)
    missing += [name for name in H11_STATE if name not in source]
    if missing:
        raise PrivateAPIChanged(f"{H11_PROTOCOL} lacks {missing}", f"{H11_HOOKS + H11_STATE}",
                                ("uvicorn", "h11"))
    return H11Protocol


def _header_deadline_h11_protocol():
    import json

    import h11

    H11Protocol = h11_protocol_base()  # noqa: N806

    class HeaderDeadlineH11Protocol(H11Protocol):
        """uvicorn's h11 protocol plus a deadline for each request's headers (slowloris: a
        connection that sends nothing, or headers a byte at a time, is closed after
        `header_timeout` seconds) and JSON bodies for malformed-request 400s."""

        header_timeout = 10.0

        def connection_made(self, transport):
            super().connection_made(transport)
            self._header_timer = None
            self._arm_header_timer()

        def _arm_header_timer(self):
            if self._header_timer is not None:
                self._header_timer.cancel()
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_deadline)

        def _header_deadline(self):
            self._header_timer = None
            waiting_for_headers = self.conn.their_state is h11.IDLE and (
                self.cycle is None or self.cycle.response_complete
            )
            if waiting_for_headers and not self.transport.is_closing():
                self.transport.close()

        def on_response_complete(self):
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_header_timer()

        def connection_lost(self, exc):
            if getattr(self, "_header_timer", None) is not None:
                self._header_timer.cancel()
                self._header_timer = None
            super().connection_lost(exc)

        def send_400_response(self, msg: str) -> None:
            body = json.dumps({"error": f"malformed HTTP request: {msg}"}).encode()
            headers = [(b"content-type", b"application/json"), (b"connection", b"close"),
                       (b"content-length", str(len(body)).encode())]
            try:
                self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers,
                                                                 reason=b"Bad Request")))
                self.transport.write(self.conn.send(h11.Data(data=body)))
                self.transport.write(self.conn.send(h11.EndOfMessage()))
            except h11.LocalProtocolError:
                pass
            self.transport.close()

    HeaderDeadlineH11Protocol.__module__ = __name__  # picklable by name, like a top-level class
    HeaderDeadlineH11Protocol.__qualname__ = HeaderDeadlineH11Protocol.__name__
    return HeaderDeadlineH11Protocol


def __getattr__(name):
    """`HeaderDeadlineH11Protocol`, built (uvicorn imported) on first access; a module attribute,
    so `--workers` processes find it by name."""
    if name == "HeaderDeadlineH11Protocol":
        protocol = globals()[name] = _header_deadline_h11_protocol()
        return protocol
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

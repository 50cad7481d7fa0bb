"""exporters.compat: every private Keras / tf2onnx / LiteRT use genzoo makes, checked against
the installed versions. A failure here after an upgrade names the version that changed the
private API; fix exporters/compat.py (or pin below that version), nowhere else."""

import json
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from exporters import compat

ROOT = Path(__file__).resolve().parents[1]
KERAS = f"Keras {keras.__version__} / TensorFlow {tf.__version__}"


def version_of(distribution):
    from importlib import metadata

    return f"{distribution} {metadata.version(distribution)}"


# ---- tf2onnx -----------------------------------------------------------------------------------
def test_keras_tf2onnx_patch_exists_and_patches_what_genzoo_needs():
    import tf2onnx

    try:
        patch = compat.tf2onnx_patch()
    except compat.PrivateAPIChanged as error:
        pytest.fail(f"{KERAS}, {version_of('tf2onnx')}: {error}")
    assert callable(patch)
    assert compat.patch_tf2onnx(required=True) is True
    patched = {
        "tf2onnx.tfonnx.rewrite_constant_fold": tf2onnx.tfonnx.rewrite_constant_fold.__name__,
        "tf2onnx.graph.Node.get_value_attr": tf2onnx.graph.Node.get_value_attr.__name__,
    }
    assert patched == {
        "tf2onnx.tfonnx.rewrite_constant_fold": "patched_rewrite_constant_fold",
        "tf2onnx.graph.Node.get_value_attr": "patched_get_value_attr",
    }, f"{KERAS}, {version_of('tf2onnx')}: keras' patch_tf2onnx no longer patches these"


def test_missing_tf2onnx_patch_is_a_loud_error_only_when_required(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "keras.src.export.tf2onnx_lib", None)  # import fails
    assert compat.patch_tf2onnx() is False
    with pytest.raises(compat.PrivateAPIChanged, match=r"tf2onnx_lib.*keras \d+\.\d+"):
        compat.patch_tf2onnx(required=True)


# ---- Keras trainer: build without reading a batch ----------------------------------------------
class Recorder(keras.Model):
    """A built model with its own train_step; records what Keras' build hook is handed."""

    seen: list

    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(1)
        self.dense.build((None, 2))
        self.built = True
        self.seen = []

    def call(self, x):
        return self.dense(x)

    def train_step(self, data):
        return {"zero": tf.zeros(())}

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):  # spies on the private hook
        self.seen.append((iterator is not None, data_batch is not None))
        return super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)


@compat.build_without_reading_a_batch
class BuildsWithoutData(Recorder):
    pass


def fit_under_a_strategy(model_class):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = model_class()
        model.compile(optimizer="sgd")
    data = tf.data.Dataset.from_tensor_slices(np.zeros((8, 2), np.float32)).batch(4)
    model.fit(data, epochs=1, verbose=0, shuffle=False)
    return model.seen


def test_keras_reads_a_batch_to_build_under_a_strategy_unless_compat_says_no():
    assert len(tf.config.list_logical_devices("CPU")) >= 2, "conftest splits the CPU in two"
    plain = fit_under_a_strategy(Recorder)
    assert plain == [(True, False)], (
        f"{KERAS}: fit under a strategy no longer calls Model._maybe_symbolic_build(iterator=...) "
        f"once (got {plain}); update compat.build_without_reading_a_batch"
    )
    assert fit_under_a_strategy(BuildsWithoutData) == [(False, False)]


def test_build_hook_signature_is_checked():
    hook = compat.symbolic_build_hook(keras.Model)
    assert callable(hook), KERAS
    with pytest.raises(compat.PrivateAPIChanged, match=r"keras \d+\.\d+.*tensorflow \d+\.\d+"):
        compat.symbolic_build_hook(keras.layers.Dense)


def test_is_fully_built_looks_inside_the_networks():
    inner = keras.layers.Dense(1)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    assert compat.is_fully_built(model)

    class Holder(keras.Model):
        def __init__(self, network):
            super().__init__()
            self.network = network
            self.built = True

    assert compat.is_fully_built(Holder(model))
    assert not compat.is_fully_built(Holder(keras.Sequential([inner])))


# ---- Keras trainer: resume at an epoch --------------------------------------------------------
class StartAt(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.begun = epoch, []

    def on_train_begin(self, logs=None):
        compat.set_initial_epoch(self.model, self.epoch)

    def on_epoch_begin(self, epoch, logs=None):
        self.begun.append(epoch)


def test_set_initial_epoch_makes_fit_resume_there():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    callback = StartAt(2)
    x, y = np.zeros((4, 2), np.float32), np.zeros((4, 1), np.float32)
    model.fit(x, y, epochs=4, verbose=0, callbacks=[callback])
    assert callback.begun == [2, 3], (
        f"{KERAS}: fit ran epochs {callback.begun} after model._initial_epoch = 2; "
        "update compat.set_initial_epoch (what BackupAndRestore uses to resume)"
    )


def test_set_initial_epoch_errors():
    with pytest.raises(compat.PrivateAPIChanged, match=r"_initial_epoch.*keras \d+\.\d+"):
        compat.set_initial_epoch(object(), 1)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match=rf"epoch must be an integer >= 0, got {bad!r}"):
            compat.set_initial_epoch(model, bad)


# ---- LiteRT: operator names ------------------------------------------------------------------
def test_litert_op_names_read_a_committed_model():
    from ai_edge_litert.interpreter import Interpreter

    export = ROOT / "saved_models" / "gan-mnist5k" / "export"
    recorded = json.loads((export / "manifest.json").read_text())["artifacts"][
        "generator-b1.tflite"
    ]["ops"]
    interpreter = Interpreter(model_path=str(export / "generator-b1.tflite"))
    try:
        ops = compat.litert_op_names(interpreter)
    except compat.PrivateAPIChanged as error:
        pytest.fail(str(error))
    assert ops == recorded, (
        f"{version_of('ai-edge-litert')}: Interpreter._get_ops_details gave {ops}, the export "
        f"recorded {recorded}"
    )


def test_litert_op_names_errors_name_the_version():
    with pytest.raises(compat.PrivateAPIChanged, match=r"_get_ops_details.*ai-edge-litert \d"):
        compat.litert_op_names(object())

    class Changed:
        def _get_ops_details(self):
            return [{"name": "ADD"}]

    with pytest.raises(compat.PrivateAPIChanged, match="without 'op_name'"):
        compat.litert_op_names(Changed())


# ---- the public route that replaced a private one -------------------------------------------
def test_float32_network_reads_policies_from_the_config():
    """`float32_network` used Keras' private `_flatten_layers`; it now reads the dtype policies
    from the serialized config: float32 stays as is, a mixed network becomes a float32 copy."""
    from exporters.converters.saved_model import float32_network

    def build(policy):
        inputs = keras.Input((3,), name="z")
        hidden = keras.layers.Dense(4, dtype=policy)(inputs)
        return keras.Model(inputs, keras.layers.Dense(2, dtype="float32")(hidden))

    plain = build("float32")
    assert float32_network(plain) is plain
    mixed = build("mixed_float16")
    copy = float32_network(mixed)
    assert copy is not mixed
    assert {layer.dtype_policy.name for layer in copy.layers[1:]} == {"float32"}
    z = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(copy(z)), keras.ops.convert_to_numpy(mixed(z)), atol=1e-2
    )


# ---- uvicorn -----------------------------------------------------------------------------------
def test_h11_protocol_has_the_hooks_and_state_the_header_deadline_needs():
    base = compat.h11_protocol_base()
    protocol = compat.HeaderDeadlineH11Protocol
    assert issubclass(protocol, base) and protocol.__module__ == "exporters.compat"
    # found by name, as the `--workers` processes find it
    import importlib

    assert getattr(importlib.import_module("exporters.compat"), protocol.__name__) is protocol


def test_a_changed_h11_protocol_is_a_loud_error_naming_uvicorn(monkeypatch):
    import uvicorn.protocols.http.h11_impl as h11_impl

    class Changed:  # what an upgrade that renamed the hooks would look like
        pass

    monkeypatch.setattr(h11_impl, "H11Protocol", Changed)
    with pytest.raises(compat.PrivateAPIChanged, match=r"uvicorn \d"):
        compat.h11_protocol_base()


def test_compat_imports_nothing_at_load_time():
    import subprocess
    import sys

    probe = (
        "import sys; import exporters.compat; "
        "heavy = sorted(m for m in ('keras', 'tensorflow', 'tf2onnx', 'ai_edge_litert', 'zoo') "
        "if m in sys.modules); assert not heavy, heavy"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], check=False, capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]

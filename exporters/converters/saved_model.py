"""SavedModel export, and the TensorFlow side every format starts from.

`serving_function` is the single definition of what an artifact computes: the network in
inference mode, in float32, with named inputs (z [, label] for a generator) and named outputs
(images). The SavedModel `serve` signature is that function with a dynamic batch; TFLite is
converted from a SavedModel of the same function with a static batch; ONNX is converted from
the same function by tf2onnx. So the three formats cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

SIGNATURE = "serve"
FLOAT32 = "float32"


# ---- the model ---------------------------------------------------------------------------
def load_model(model_or_path):
    """A model object as given, or one loaded from a `.keras` file or a run folder's model.keras.

    The converters never import `zoo`: a `.keras` file of a zoo family loads once its classes
    are registered with Keras, which `import zoo` does (the CLI and `zoo.train` have). Without
    that, the error says so instead of Keras' "could not locate class".
    """
    if not isinstance(model_or_path, (str, Path)):
        if getattr(model_or_path, "generator", None) is None:
            raise TypeError(
                "export takes a model with a .generator (a zoo model) or a path to a .keras file "
                f"or run folder, got {type(model_or_path).__name__}"
            )
        return model_or_path
    path = Path(model_or_path)
    if path.is_dir():
        path = path / "model.keras"
    if path.suffix != ".keras" or not path.is_file():
        raise FileNotFoundError(
            f"no .keras model at {str(model_or_path)!r} (pass a .keras file or a run folder "
            "holding model.keras)"
        )
    try:
        return keras.models.load_model(path, compile=False)
    except TypeError as error:
        if "Could not locate class" not in str(error):
            raise ValueError(f"could not load {str(path)!r} as a Keras model: {error}") from error
        raise ValueError(
            f"{str(path)!r} holds a class Keras does not know yet; `import zoo` before exporting "
            f"a zoo model from its file ({str(error).splitlines()[0]})"
        ) from error
    except Exception as error:  # a corrupt or foreign file: say which, keep the cause
        raise ValueError(f"could not load {str(path)!r} as a Keras model: {error}") from error


def float32_network(network: keras.Model) -> keras.Model:
    """The network itself when it computes in float32, else a float32 copy with its weights.

    Exports must run in float32 (mixed_float16 artifacts lose precision and some runtimes lack
    float16 kernels), so a network trained under a mixed policy is rebuilt from its serialized
    config with every dtype policy set to float32. Which policies the network uses is read
    from that config too (public API: every layer's policy is serialized with it).
    """
    config = keras.saving.serialize_keras_object(network)
    if _policy_names(config) <= {FLOAT32}:
        return network
    config = _float32_policies(config)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(FLOAT32)
    try:
        copy = keras.saving.deserialize_keras_object(config)
    finally:
        keras.config.set_dtype_policy(previous)
    copy.set_weights([np.asarray(w, dtype=np.float32) for w in network.get_weights()])
    return copy


def _policy_names(config) -> set[str]:
    """Names of every dtype policy in a serialized Keras config ("float32", "mixed_float16")."""
    if isinstance(config, dict):
        found = set()
        if str(config.get("class_name", "")).endswith("DTypePolicy"):
            found.add(str(config.get("config", {}).get("name")))
        for value in config.values():
            found |= _policy_names(value)
        return found
    if isinstance(config, list):
        return set().union(*map(_policy_names, config))
    return set()


def _float32_policies(config):
    if isinstance(config, dict):
        if str(config.get("class_name", "")).endswith("DTypePolicy"):
            return {**config, "config": {**config.get("config", {}), "name": FLOAT32}}
        return {key: _float32_policies(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_policies(value) for value in config]
    return config


# ---- the serving function ------------------------------------------------------------------
def input_specs(network: keras.Model, batch_size=None) -> list[tf.TensorSpec]:
    """One named TensorSpec per network input, batch dimension `batch_size` (None: dynamic)."""
    specs = []
    for i, tensor in enumerate(network.inputs):
        name = getattr(tensor, "name", None) or f"input_{i}"
        specs.append(tf.TensorSpec((batch_size, *tensor.shape[1:]), tensor.dtype, name=name))
    return specs


def default_output_names(network: keras.Model) -> tuple[str, ...]:
    count = len(network.outputs)
    return ("images",) if count == 1 else tuple(f"output_{i}" for i in range(count))


def serving_function(network: keras.Model, batch_size=None, output_names=None):
    """(tf.function of named inputs -> {name: output}, input specs, output names, the float32
    network the function calls: whoever saves the function must track that network's variables)."""
    network = float32_network(network)
    specs = input_specs(network, batch_size)
    output_names = tuple(output_names or default_output_names(network))
    if len(output_names) != len(network.outputs):
        raise ValueError(
            f"output_names={output_names!r} must name the network's {len(network.outputs)} outputs"
        )

    def call(*inputs):
        outputs = network(inputs[0] if len(inputs) == 1 else list(inputs), training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return {name: tf.cast(out, tf.float32) for name, out in zip(output_names, outputs)}

    function = tf.function(call, input_signature=specs, autograph=False)
    return function, specs, output_names, network


def describe_specs(specs) -> list[dict]:
    return [
        {"name": spec.name, "dtype": spec.dtype.name, "shape": [d for d in spec.shape.as_list()]}
        for spec in specs
    ]


# ---- the format ------------------------------------------------------------------------------
def export_saved_model(network, filepath, batch_size=None, output_names=None) -> dict:
    """Write `network` as a SavedModel with one `serve` signature; returns inputs/outputs.

    Uses keras.export.ExportArchive (the supported Keras 3 route): it tracks the variables so
    the signature runs without any Keras or zoo code at load time.
    """
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0
    ):
        raise ValueError(f"batch_size must be a positive integer or None, got {batch_size!r}")
    function, specs, names, network = serving_function(network, batch_size, output_names)
    archive = keras.export.ExportArchive()
    archive.track(network)
    archive.add_endpoint(SIGNATURE, function)
    archive.write_out(str(filepath), verbose=False)
    outputs = function.get_concrete_function().structured_outputs
    return {
        "signature": SIGNATURE,
        "inputs": describe_specs(specs),
        "outputs": [
            {"name": name, "dtype": "float32", "shape": outputs[name].shape.as_list()}
            for name in names
        ],
        "batch": batch_size,
    }


class SavedModelBackend:
    """Runs the `serve` signature of a SavedModel: {input name: array} -> {output name: array}."""

    format = "saved_model"

    def __init__(self, path):
        self.path = Path(path)
        self.function = tf.saved_model.load(str(path)).signatures[SIGNATURE]

    def run(self, feeds: dict) -> dict:
        outputs = self.function(**{name: tf.constant(value) for name, value in feeds.items()})
        return {name: value.numpy() for name, value in outputs.items()}

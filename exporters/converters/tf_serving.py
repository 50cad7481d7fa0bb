"""A SavedModel in TensorFlow Serving's model layout:

    <filepath>/<model_name>/1/saved_model.pb, variables/

with the `serve` signature genzoo's SavedModel has and the same function as `serving_default`,
the signature TF Serving's REST API and KServe's TF Serving runtime use when a request names none.

    tensorflow_model_server --rest_api_port=8501 --model_name=generator \\
        --model_base_path=$PWD/<export folder>/tf_serving/generator
"""

from __future__ import annotations

from pathlib import Path

from exporters import manifest as manifest_lib

VERSION = "1"
DEFAULT_MODEL_NAME = "generator"
SIGNATURES = ("serve", "serving_default")


def export_tf_serving(network, filepath, output_names=None,
                      model_name: str = DEFAULT_MODEL_NAME) -> dict:
    import keras

    from exporters.converters.saved_model import describe_specs, serving_function

    manifest_lib.check_model_name(model_name)
    version = Path(filepath) / model_name / VERSION
    version.parent.mkdir(parents=True)
    function, specs, names, network = serving_function(network, None, output_names)
    archive = keras.export.ExportArchive()
    archive.track(network)
    for signature in SIGNATURES:
        archive.add_endpoint(signature, function)
    archive.write_out(str(version), verbose=False)
    outputs = function.get_concrete_function().structured_outputs
    return {
        "signatures": list(SIGNATURES),
        "inputs": describe_specs(specs),
        "outputs": [{"name": name, "dtype": "float32", "shape": outputs[name].shape.as_list()}
                    for name in names],
        "batch": None,
        "model_name": model_name,
        "model_dir": f"{model_name}/{VERSION}",
    }

"""The converter tier: Keras generator -> SavedModel, TFLite, ONNX, each verified.

Imports TensorFlow, Keras, tf2onnx and the TF-free tier (`exporters.*`), never `zoo`: the
converters see only a Keras network and a few plain attributes of the model that owns it
(family, latent_dim, num_classes, image_shape, generator). `export.export` is the entry point;
one module per format (`saved_model`, `tflite`, `onnx`), each `export_<fmt>(network, filepath,
**kwargs)`, and `verify` shared by all.
"""

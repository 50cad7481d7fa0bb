"""Export trained generators to SavedModel, TFLite and ONNX. Importing this package loads no
TensorFlow: `exporters.runtime` must stay usable where TensorFlow is not installed."""

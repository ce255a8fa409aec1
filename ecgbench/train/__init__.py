"""The one training and evaluation API every strategy uses, checkpoints and ONNX export."""

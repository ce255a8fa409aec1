"""What a cell's model is measured for: scores, sizes, ONNX graph analysis, host latency, device simulation."""

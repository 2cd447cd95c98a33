"""Deployment: the inference graph, ONNX export and the predictor backends."""

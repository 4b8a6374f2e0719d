"""Model optimization: ONNX variants (int8, pruned, distilled), GGUF quantization, training."""

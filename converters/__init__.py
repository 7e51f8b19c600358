"""edgekit.converters: sources → exported program → rewrite passes → ONNX / TFLite / CoreML →
verification → lint. Heavy libraries (torch, onnx, litert-torch, coremltools) are imported
inside the functions that use them."""

"""x4 inference: the official tile plan and blend, `SuperResolver`, the runtimes it drives (the PyTorch model, an
exported folder in ONNX Runtime or TensorRT, through `runtime.Generator`), export manifests, and strsr-upscale."""

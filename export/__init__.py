"""`strsr-export`: merged weights, ONNX graphs with parity checks, manifests (`strsr.export`)."""

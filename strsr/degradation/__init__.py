"""Training LR images: the RealESRGAN second-order degradation (blur kernels, resize, noise, DiffJPEG) and its
settings (`config.DegradationConfig`, importable without torch)."""

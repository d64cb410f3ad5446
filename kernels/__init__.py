"""Triton kernels beside their plain-PyTorch references (`strsr.kernels`); depends on torch (and triton, lazily)."""

"""StrSR training objectives (paper §3.3-3.4, Eqs. 7-11): RaGAN, approximated R1, FDL, LPIPS, L1."""

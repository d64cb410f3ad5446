"""`strsr-train`: two-stage adversarial training of the one-step StrSR generator (paper §3.3-3.4, §4.1)."""

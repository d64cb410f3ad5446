"""strsr-train: TOML recipes, the training loop and its checkpoints."""

# The recipes shipped in strsr/train/recipes/ (named here so command-line help lists them without importing torch).
RECIPES = ("tiny", "tiny-stage2", "tiny-bicubic", "flux2-klein-4b-stage1", "flux2-klein-4b-stage2",
           "zimage-turbo-stage1", "zimage-turbo-stage2")

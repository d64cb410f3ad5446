"""The metric sets strsr-eval names (no imports: command-line parsers use them before pyiqa or torch load)."""

# The paper's Table 1 (Sec. 4.1), all through pyiqa.
PAPER_METRICS = ("psnr", "ssim", "lpips", "dists", "niqe", "maniqa", "musiq", "qalign", "qualiclip")
# pyiqa metrics that build with no weight file at all (checked with pyiqa 0.1.16): the ones that run offline.
WEIGHT_FREE_METRICS = ("psnr", "ssim", "ms_ssim", "cw_ssim", "fsim", "gmsd", "vif", "vsi", "nlpd", "mad", "piqe")

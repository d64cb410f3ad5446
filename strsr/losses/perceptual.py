"""LPIPS (VGG) for the lambda_1 term, from the maintained `lpips` package, loaded without any download.

`lpips` ships its learned linear-layer weights inside the package; only the VGG16 backbone would come from
torchvision's hub, so it is built with random weights and then filled from a local torchvision VGG16 state-dict
file. Without that file the backbone stays random (tests, offline smoke runs) and a warning says so.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger("strsr")

# Conv layers of torchvision's vgg16().features up to relu5_3, and the lpips slice each one sits in.
_VGG16_CONVS = {0: 1, 2: 1, 5: 2, 7: 2, 10: 3, 12: 3, 14: 3, 17: 4, 19: 4, 21: 4, 24: 5, 26: 5, 28: 5}


def _vgg16_to_lpips_keys(state: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """torchvision `features.{i}.{weight,bias}` -> lpips `slice{k}.{i}.{weight,bias}`."""
    missing = [f"features.{i}.weight" for i in _VGG16_CONVS if f"features.{i}.weight" not in state]
    if missing:
        raise ValueError(f"{path}: not a torchvision VGG16 state dict (missing {', '.join(missing[:3])})")
    return {
        f"slice{k}.{i}.{kind}": state[f"features.{i}.{kind}"]
        for i, k in _VGG16_CONVS.items()
        for kind in ("weight", "bias")
    }


class LPIPSLoss(nn.Module):
    """Mean LPIPS distance between (B, 3, H, W) images in [-1, 1]; frozen, always in eval mode."""

    def __init__(self, vgg16_weights: str | Path | None = None):
        super().__init__()
        import lpips

        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=` flag
            warnings.simplefilter("ignore", UserWarning)
            self.lpips = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False)
        if vgg16_weights is None:
            log.warning("LPIPS uses a random VGG16 backbone (no vgg16_weights file given): values are not LPIPS")
        else:
            path = Path(vgg16_weights)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: VGG16 weights file not found")
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.lpips.net.load_state_dict(_vgg16_to_lpips_keys(state, path))
        self.lpips.requires_grad_(False)
        self.lpips.eval()

    def train(self, mode: bool = True) -> LPIPSLoss:
        return super().train(False)  # dropout in lpips' linear layers must stay off

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.lpips(prediction, target).mean()

"""LPIPS wrapper: equals the lpips package on the same backbone, loads VGG16 from a local file, never downloads."""

import warnings

import lpips
import pytest
import torch
from skimage import data
from torchvision.models import vgg16

from strsr.losses.perceptual import LPIPSLoss


def _photo_pair():
    rgb = torch.from_numpy(data.astronaut()[100:164, 150:214]).permute(2, 0, 1)[None].float() / 255 * 2 - 1
    return rgb, (rgb + 0.1 * torch.randn(rgb.shape, generator=torch.Generator().manual_seed(0))).clamp(-1, 1)


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "vgg16.pth"
    torch.save(vgg16().state_dict(), path)
    return path


def test_local_vgg16_weights_give_the_reference_lpips(vgg16_file):
    loss = LPIPSLoss(vgg16_weights=vgg16_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        reference = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()
    features = vgg16().features
    features.load_state_dict({k.removeprefix("features."): v for k, v in torch.load(vgg16_file).items()
                              if k.startswith("features.")})  # fmt: skip
    # lpips slices keep torchvision's layer indices: conv i of slice k is `slice{k}.{i}`
    reference.net.load_state_dict({f"slice{k}.{i}.{kind}": features[i].state_dict()[kind]
                                   for k, layers in ((1, (0, 2)), (2, (5, 7)), (3, (10, 12, 14)), (4, (17, 19, 21)),
                                                     (5, (24, 26, 28)))
                                   for i in layers for kind in ("weight", "bias")})  # fmt: skip
    a, b = _photo_pair()
    expected = reference(a, b).mean()
    assert loss(a, b).item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss(a, a).item() == pytest.approx(0.0, abs=1e-7)


def test_gradients_reach_the_prediction_not_the_loss():
    loss = LPIPSLoss()
    a, b = _photo_pair()
    a = a.clone().requires_grad_()
    loss(a, b).backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.lpips.training  # dropout in lpips' linear heads stays off


def test_bad_weight_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pth: VGG16 weights file not found"):
        LPIPSLoss(vgg16_weights=tmp_path / "missing.pth")
    torch.save({"classifier.0.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match="wrong.pth: not a torchvision VGG16 state dict"):
        LPIPSLoss(vgg16_weights=tmp_path / "wrong.pth")

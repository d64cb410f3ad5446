"""CLIP-ConvNeXt PatchGAN discriminator: shapes, frozen trunk, gradients, weight loading, current timm/open_clip, and
the official heads (binomial blur, zero padding, spectral norm with one power iteration per train-mode forward)."""

import json

import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F

from strsr.losses.discriminator import TINY_CLIP_CONFIG, BinomialBlur, PatchHead, build_discriminator
from strsr.losses.gan import ragan_d_loss, ragan_g_loss
from strsr.spec import MissingWeightsError


@pytest.fixture(scope="module")
def tiny_d():
    return build_discriminator("tiny", seed=0)


@pytest.mark.parametrize("size", [256, 1024])
def test_head_shapes(tiny_d, size):
    with torch.no_grad():
        logits = tiny_d(torch.zeros(1, 3, size, size))
    # strides 4, 8, 16, then two stride-2 convs per head: /16, /32, /64; then the embedding logit
    assert [tuple(x.shape) for x in logits] == [
        (1, 1, size // 16, size // 16), (1, 1, size // 32, size // 32), (1, 1, size // 64, size // 64), (1, 1),
    ]  # fmt: skip


def test_xxlarge_architecture_on_meta():
    d = build_discriminator("convnext_xxlarge", device="meta")
    assert d.stage_channels == [384, 768, 1536]
    assert d.embedding_head.layers[0].in_features == 1024
    logits = d(torch.zeros(2, 3, 1024, 1024, device="meta"))
    assert [tuple(x.shape) for x in logits] == [(2, 1, 64, 64), (2, 1, 32, 32), (2, 1, 16, 16), (2, 1)]
    trunk = sum(p.numel() for p in d.visual.parameters())
    assert trunk == pytest.approx(846.5e6, rel=1e-3)  # CLIP-ConvNeXt-XXLarge image tower
    assert not any(p.requires_grad for p in d.visual.parameters())


def test_only_heads_train_and_the_trunk_stays_in_eval(tiny_d):
    trainable = {n for n, p in tiny_d.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(("patch_heads.", "embedding_head.")) for n in trainable)
    assert {id(p) for p in tiny_d.head_parameters()} == {id(p) for p in tiny_d.parameters() if p.requires_grad}
    tiny_d.train()
    assert not tiny_d.visual.training and tiny_d.patch_heads.training
    tiny_d.eval()


def test_clip_normalisation_of_minus_one_to_one_input(tiny_d):
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    stages, embedding = tiny_d.features(images)
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = tiny_d.visual((images + 1) / 2 * 1 / std - mean / std)
    torch.testing.assert_close(embedding, expected, rtol=1e-5, atol=1e-5)
    assert [s.shape[1] for s in stages] == [40, 80, 160]  # convnext_atto widths at strides 4, 8, 16


def test_gradients_reach_heads_in_d_loss_and_generator_output_in_g_loss(tiny_d):
    real = torch.rand(2, 3, 64, 64) * 2 - 1
    fake = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_()
    tiny_d.zero_grad()
    ragan_d_loss(tiny_d(real), tiny_d(fake.detach())).backward()
    heads = dict((n, p) for n, p in tiny_d.named_parameters() if p.requires_grad)
    assert all(p.grad is not None for p in heads.values())
    # A head's last bias shifts real and fake logits alike and cancels in the relativistic difference.
    assert all(p.grad.abs().sum() > 0 for n, p in heads.items() if "weight" in n)
    assert all(p.grad is None for p in tiny_d.visual.parameters())
    assert fake.grad is None
    tiny_d.zero_grad()
    with torch.no_grad():
        real_logits = tiny_d(real)
    ragan_g_loss(real_logits, tiny_d(fake)).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_trunk_weights_load_from_a_local_open_clip_checkpoint(tmp_path):
    (tmp_path / "strsr-tiny-convnext.json").write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(tmp_path / "strsr-tiny-convnext.json")
    torch.manual_seed(3)
    reference = open_clip.CLIP(**TINY_CLIP_CONFIG)
    torch.save(reference.state_dict(), tmp_path / "tiny_clip.bin")
    d = build_discriminator("strsr-tiny-convnext", tmp_path / "tiny_clip.bin", seed=9)
    for name, value in reference.visual.state_dict().items():
        assert torch.equal(d.visual.state_dict()[name], value), name
    with pytest.raises(MissingWeightsError, match="nope.bin: open_clip checkpoint for convnext_xxlarge not found"):
        build_discriminator("convnext_xxlarge", tmp_path / "nope.bin")


# ------------------------------------------------------------------- heads as the official (vision-aided-loss 0.1.0)


def _blur_reference(x: np.ndarray, pad: int) -> np.ndarray:
    """The official heads' blur written out: zero-pad by `pad`, then per channel the stride-1 correlation with
    [1, 3, 3, 1] x [1, 3, 3, 1] / 64, by explicit loops. x (C, H, W) -> (C, H + 2 pad - 3, W + 2 pad - 3)."""
    taps = np.array([1.0, 3.0, 3.0, 1.0])
    kernel = np.outer(taps, taps) / 64
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((x.shape[0], padded.shape[1] - 3, padded.shape[2] - 3))
    for i in range(out.shape[1]):
        for j in range(out.shape[2]):
            out[:, i, j] = (padded[:, i : i + 4, j : j + 4] * kernel).sum(axis=(1, 2))
    return out


@pytest.mark.parametrize("pad", [1, 2])
def test_blur_is_the_written_out_binomial_filter_with_zero_padding(pad):
    x = torch.rand(3, 9, 12, generator=torch.Generator().manual_seed(pad))
    got = BinomialBlur(3, pad)(x[None].double())[0].numpy()
    np.testing.assert_allclose(got, _blur_reference(x.double().numpy(), pad), atol=1e-12, rtol=0)
    assert not BinomialBlur(3, pad).state_dict()  # a constant, not a checkpointed tensor


def _power_iteration(weight: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One power iteration on the (out, in * k * k) matrix: v = normalise(W^T u), u = normalise(W v)."""
    w = weight.flatten(1)
    v = w.T @ u
    v = v / v.norm()
    u = w @ v
    return u / u.norm(), v


def test_head_is_blur_sn_conv_leaky_blur_sn_conv_with_one_power_iteration_per_train_forward():
    """The whole head by hand from its own weights: each SN conv divides W by u^T W v after one power iteration in
    train mode, none in eval; both blurs as written out above; no padding on the 3x3 stride-2 conv."""
    torch.manual_seed(0)
    head = PatchHead(6, width=8).double()
    conv1, conv2 = head.layers[1], head.layers[4]
    x = torch.rand(2, 6, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    def by_hand(u1, u2):
        (u1, v1), (u2, v2) = _power_iteration(conv1.weight_orig, u1), _power_iteration(conv2.weight_orig, u2)
        w1 = conv1.weight_orig / (u1 @ conv1.weight_orig.flatten(1) @ v1)
        w2 = conv2.weight_orig / (u2 @ conv2.weight_orig.flatten(1) @ v2)
        blurred = torch.from_numpy(np.stack([_blur_reference(s.numpy(), 2) for s in x]))
        h = F.leaky_relu(F.conv2d(blurred, w1, conv1.bias, stride=2), 0.2)
        h = torch.from_numpy(np.stack([_blur_reference(s.numpy(), 1) for s in h.detach()]))
        return F.conv2d(h, w2, conv2.bias, stride=2), u1, u2

    with torch.no_grad():
        u1, u2 = conv1.weight_u.clone(), conv2.weight_u.clone()
        expected, next_u1, next_u2 = by_hand(u1, u2)
        got = head.train()(x)
        assert got.shape == (2, 1, 4, 4)  # 16 -> 8 -> 4, as before
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=0)
        torch.testing.assert_close(conv1.weight_u, next_u1, atol=1e-12, rtol=0)
        torch.testing.assert_close(conv2.weight_u, next_u2, atol=1e-12, rtol=0)
        eval_u = conv1.weight_u.clone()
        head.eval()(x)
        assert torch.equal(conv1.weight_u, eval_u)  # eval mode: stored vectors, no iteration


def test_spectral_norm_starts_unconverged():
    """No power iterations at construction (the official spectral_norm): the stored estimate u^T W v starts far
    below the top singular value, which 15 construction iterations (torch's parametrization) would nearly reach."""
    torch.manual_seed(0)
    conv = PatchHead(64, width=128).layers[1]
    w = conv.weight_orig.detach().flatten(1)
    estimate = (conv.weight_u @ w @ conv.weight_v).abs()
    assert estimate < 0.5 * torch.linalg.matrix_norm(w, ord=2)

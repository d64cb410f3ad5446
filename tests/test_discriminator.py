"""CLIP-ConvNeXt PatchGAN discriminator: shapes, frozen trunk, gradients, weight loading, current timm/open_clip."""

import json

import open_clip
import pytest
import torch

from strsr.backbones import MissingWeightsError
from strsr.discriminator import TINY_CLIP_CONFIG, build_discriminator
from strsr.losses.gan import ragan_d_loss, ragan_g_loss


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

"""Frequency Distribution Loss (paper §3.4, Eq. 10) against a naive loop implementation, plus its contract:
projections as checkpointed state, finite gradients at |F| = 0, local VGG19 weights, input range, backends."""

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from skimage import data

from strsr.kernels.dispatch import KernelBackendError
from strsr.losses import fdl
from strsr.losses.fdl import (
    AmplitudePhaseFunction,
    FrequencyDistributionLoss,
    _sliced_wasserstein,
    spectral_sliced_wasserstein_ref,
)

CUT_INDICES = (3, 8, 17, 26, 35)  # relu1_2, relu2_2, relu3_4, relu4_4, relu5_4 in vgg19().features


def _images(batch, size, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, size, size, generator=gen) * 2 - 1


def _naive_fdl(loss, x, y, per_filter=True):
    """FDL by hand: per sample, layer, component and projection; unfold + one filter at a time, Python sums.

    per_filter=False projects all filters with one matmul on the unfolded columns (still no conv2d), then sorts and
    sums per projection as before: one filter at a time re-reads a (C * p * p, L) matrix per filter, which makes
    256 projections take 5-20 s on two cores.
    """
    feats_x, feats_y = loss.features(x), loss.features(y)
    per_sample = [0.0] * x.shape[0]
    for feat_x, feat_y, proj in zip(feats_x, feats_y, loss.projections):
        num_proj, patch = proj.shape[0], proj.shape[-1]
        for b in range(x.shape[0]):
            spec_x, spec_y = torch.fft.fftn(feat_x[b], dim=(-2, -1)), torch.fft.fftn(feat_y[b], dim=(-2, -1))
            amp = [torch.sqrt(s.real**2 + s.imag**2) for s in (spec_x, spec_y)]
            phase = [torch.atan2(s.imag, s.real) for s in (spec_x, spec_y)]
            for weight, (a, c) in ((1.0, amp), (loss.phase_weight, phase)):
                cols_a, cols_c = F.unfold(a[None], patch)[0], F.unfold(c[None], patch)[0]  # (C * p * p, L)
                if not per_filter:
                    all_a, all_c = proj.flatten(1) @ cols_a, proj.flatten(1) @ cols_c  # (P, L)
                total = 0.0
                for k in range(num_proj):
                    w = proj[k].flatten()
                    proj_a, proj_c = (w @ cols_a, w @ cols_c) if per_filter else (all_a[k], all_c[k])
                    sorted_a, _ = torch.sort(proj_a)
                    sorted_c, _ = torch.sort(proj_c)
                    total += (sorted_a - sorted_c).abs().mean().item()
                per_sample[b] += weight * total / num_proj
    return sum(per_sample) / len(per_sample)


def test_matches_naive_implementation_float64():
    loss = FrequencyDistributionLoss(num_proj=8, phase_weight=0.5, seed=3).double()
    x, y = _images(2, 96, 0).double(), _images(2, 96, 1).double()
    assert loss(x, y).item() == pytest.approx(_naive_fdl(loss, x, y), rel=1e-5)


def test_default_256_projections_match_naive_and_backprop():
    loss = FrequencyDistributionLoss().double()
    assert [tuple(p.shape) for p in loss.projections] == [(256, c, 5, 5) for c in (64, 128, 256, 512, 512)]
    x, y = _images(1, 80, 2).double().requires_grad_(), _images(1, 80, 3).double()
    value = loss(x, y)
    assert value.item() == pytest.approx(_naive_fdl(loss, x.detach(), y, per_filter=False), rel=1e-5)
    value.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_identical_inputs_cost_zero():
    loss = FrequencyDistributionLoss(num_proj=8)
    x = _images(2, 80, 4)
    assert loss(x, x.clone()).item() < 1e-7


def test_small_shift_costs_far_less_than_shuffled_pixels():
    """FDL's point: a misaligned copy of a photo is close, a same-statistics scramble is far.

    Measured with these seeded random VGG weights: shift / shuffled = 1.66 / 12.40 = 0.13 (num_proj=64); 0.09-0.26 over
    seeds 0-2, two crops each of astronaut and chelsea, 16 or 256 projections.
    """
    img = torch.from_numpy(data.astronaut()[40:136, 180:276].astype(np.float32)).permute(2, 0, 1)[None] / 127.5 - 1
    shifted = torch.roll(img, shifts=(2, 2), dims=(2, 3))
    perm = torch.randperm(96 * 96, generator=torch.Generator().manual_seed(0))
    shuffled = img.flatten(2)[:, :, perm].view_as(img)  # same per-channel mean and std
    loss = FrequencyDistributionLoss(num_proj=64, seed=0)
    shift_cost, shuffle_cost = loss(shifted, img).item(), loss(shuffled, img).item()
    assert 0 < shift_cost < 0.5 * shuffle_cost, (shift_cost, shuffle_cost)


def test_projections_unit_norm_seeded_and_in_state_dict():
    rng_state = torch.get_rng_state()
    a, b = FrequencyDistributionLoss(num_proj=8, seed=7), FrequencyDistributionLoss(num_proj=8, seed=7)
    assert torch.equal(rng_state, torch.get_rng_state())  # a local generator: the global RNG is untouched
    c = FrequencyDistributionLoss(num_proj=8, seed=8)
    assert len(a.projections) == 5
    for pa, pb, pc in zip(a.projections, b.projections, c.projections):
        torch.testing.assert_close(pa.flatten(1).norm(dim=1), torch.ones(8))
        assert torch.equal(pa, pb) and not torch.equal(pa, pc)
        assert not pa.requires_grad
    state = a.state_dict()
    assert list(state) == [f"projection_{i}" for i in range(5)]  # VGG weights come from the file, not the checkpoint
    c.load_state_dict(state)
    for pa, pc in zip(a.projections, c.projections):
        assert torch.equal(pa, pc)


def test_projections_do_not_depend_on_the_vgg_weights(vgg19_files):
    random_vgg = FrequencyDistributionLoss(num_proj=8, seed=5)
    file_vgg = FrequencyDistributionLoss(num_proj=8, seed=5, vgg_weights=vgg19_files["features"])
    for pa, pb in zip(random_vgg.projections, file_vgg.projections):
        assert torch.equal(pa, pb)


def test_amplitude_phase_gradient_matches_torch_away_from_zero_and_is_zero_at_zero():
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(64, dtype=torch.complex128, generator=gen)
    z[:4] = torch.tensor([0, 1e-30, 1e-200, 5e-324], dtype=torch.complex128)  # zero, tiny, < sqrt(tiny), subnormal
    g_amp, g_phase = torch.randn(64, dtype=torch.float64, generator=gen), torch.randn(64, dtype=torch.float64)
    ours = z.clone().requires_grad_()
    amp, phase = AmplitudePhaseFunction.apply(ours)
    assert torch.equal(amp, z.abs()) and torch.equal(phase, z.angle())
    (amp * g_amp + phase * g_phase).sum().backward()
    theirs = z.clone().requires_grad_()
    (theirs.abs() * g_amp + theirs.angle() * g_phase).sum().backward()
    assert torch.isfinite(ours.grad).all()
    assert not torch.isfinite(theirs.grad[2:4]).all()  # why the custom backward exists
    torch.testing.assert_close(ours.grad[4:], theirs.grad[4:], rtol=1e-10, atol=1e-12)
    assert ours.grad[0] == 0 and theirs.grad[0] == 0
    torch.testing.assert_close(ours.grad[1], theirs.grad[1])  # 1e-30 is still fine in float64
    assert ours.grad[2].imag == 0  # below sqrt(tiny): only the bounded amplitude term remains


def test_amplitude_phase_gradcheck():
    feat = torch.rand(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)

    def fn(f):
        amp, phase = AmplitudePhaseFunction.apply(torch.fft.fftn(f, dim=(-2, -1)))
        return amp, phase

    assert torch.autograd.gradcheck(fn, (feat,))


def test_reference_gradient_finite_on_spectra_with_exact_zeros():
    proj = FrequencyDistributionLoss(num_proj=8).projections[0]
    gen = torch.Generator().manual_seed(1)
    feat = torch.zeros(2, 64, 12, 12)
    feat[1] = 0.7  # constant map: FFT is zero everywhere but DC
    feat[:, :8] = torch.rand(2, 8, 12, 12, generator=gen) * 1e-22  # tiny channels: torch.angle's backward is NaN
    feat.requires_grad_()
    target = torch.fft.fftn(torch.rand(2, 64, 12, 12, generator=gen), dim=(-2, -1))
    score = spectral_sliced_wasserstein_ref(torch.fft.fftn(feat, dim=(-2, -1)), target, proj)
    assert score.shape == (2,) and torch.isfinite(score).all()
    score.sum().backward()
    assert torch.isfinite(feat.grad).all() and feat.grad.abs().sum() > 0


@pytest.mark.parametrize("value", [0.3, -1.0, -50.0])
def test_loss_gradient_finite_for_constant_and_saturating_images(value):
    loss = FrequencyDistributionLoss(num_proj=8)
    x = torch.full((1, 3, 80, 80), value, requires_grad=True)
    loss(x, _images(1, 80, 5)).backward()
    assert torch.isfinite(x.grad).all()


def test_gradient_reaches_x_only_and_loss_has_no_trainable_parameters():
    loss = FrequencyDistributionLoss(num_proj=8)
    assert list(loss.parameters()) == []
    x, y = _images(1, 80, 6).requires_grad_(), _images(1, 80, 7).requires_grad_()
    loss(x, y).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert y.grad is None  # the target's graph is never built


def test_vgg_stays_in_eval_mode_inside_a_training_parent():
    parent = torch.nn.ModuleDict({"head": torch.nn.Dropout(), "fdl": FrequencyDistributionLoss(num_proj=8)})
    parent.train()
    assert parent["head"].training and parent["fdl"].training
    assert not any(m.training for m in parent["fdl"].vgg.modules())
    parent.requires_grad_(True)  # a careless parent cannot unfreeze VGG: its weights are buffers
    assert list(parent["fdl"].parameters()) == []


@pytest.fixture(scope="module")
def vgg19_files(tmp_path_factory):
    """A seeded random torchvision vgg19(), saved as a full and as a features-only state dict."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torchvision.models.vgg19().eval()
    folder = tmp_path_factory.mktemp("vgg19")
    state = model.state_dict()
    torch.save(state, folder / "vgg19_full.pth")
    torch.save({k: v for k, v in state.items() if k.startswith("features.")}, folder / "vgg19_features.pth")
    return {"model": model, "full": folder / "vgg19_full.pth", "features": folder / "vgg19_features.pth"}


@pytest.mark.parametrize("kind", ["full", "features"])
def test_vgg_weights_from_local_file_give_torchvision_features(vgg19_files, kind):
    loss = FrequencyDistributionLoss(num_proj=8, vgg_weights=vgg19_files[kind])
    x = _images(1, 80, 8)
    mean, std = (
        torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1),
        torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1),
    )
    h, expected = ((x + 1) / 2 - mean) / std, []
    with torch.no_grad():
        for i, layer in enumerate(vgg19_files["model"].features):
            h = layer(h)
            if i in CUT_INDICES:
                expected.append(h.clone())
        got = loss.features(x)
    assert [tuple(f.shape[1:]) for f in got] == [(64, 80, 80), (128, 40, 40), (256, 20, 20), (512, 10, 10), (512, 5, 5)]
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e)


def test_vgg_weights_errors_name_the_file(tmp_path, vgg19_files):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        FrequencyDistributionLoss(num_proj=8, vgg_weights=missing)
    wrong_keys = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, wrong_keys)
    with pytest.raises(ValueError, match=r"resnet\.pth.*not a torchvision VGG19.*features\.0\.weight"):
        FrequencyDistributionLoss(num_proj=8, vgg_weights=wrong_keys)
    vgg16 = tmp_path / "vgg16.pth"  # torchvision layout, but VGG16's layer indices
    layers = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
    torch.save({f"features.{k}": v for k, v in layers.state_dict().items()}, vgg16)
    with pytest.raises(ValueError, match=r"vgg16\.pth.*missing: features\.16\.weight"):
        FrequencyDistributionLoss(num_proj=8, vgg_weights=vgg16)
    wrong_shape = tmp_path / "gray.pth"
    state = {k: v.clone() for k, v in torch.load(vgg19_files["features"], weights_only=True).items()}
    state["features.0.weight"] = torch.zeros(64, 1, 3, 3)
    torch.save(state, wrong_shape)
    with pytest.raises(ValueError, match=r"gray\.pth.*wrong shape: features\.0\.weight \(64, 1, 3, 3\)"):
        FrequencyDistributionLoss(num_proj=8, vgg_weights=wrong_shape)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"garbage\.pth"):
        FrequencyDistributionLoss(num_proj=8, vgg_weights=garbage)


def test_random_weights_warning_logged_once(caplog):
    fdl._warn_random_vgg_weights.cache_clear()
    with caplog.at_level(logging.WARNING, logger="strsr"):
        FrequencyDistributionLoss(num_proj=8)
        FrequencyDistributionLoss(num_proj=8)
    assert sum("random VGG19 weights" in r.message for r in caplog.records) == 1


def test_input_range_mapping():
    default = FrequencyDistributionLoss(num_proj=8, seed=2)
    raw = FrequencyDistributionLoss(num_proj=8, seed=2, input_range="raw")
    x, y = _images(1, 80, 9), _images(1, 80, 10)
    # default: x -> (x + 1) / 2 -> ImageNet normalisation; raw: straight into the normalisation (official StrSR)
    assert default(x, y).item() == pytest.approx(raw((x + 1) / 2, (y + 1) / 2).item(), rel=1e-6)
    for a, b in zip(default.features(x), raw.features((x + 1) / 2)):
        torch.testing.assert_close(a, b)
    assert default(x, y).item() != pytest.approx(raw(x, y).item(), rel=1e-3)
    with pytest.raises(ValueError, match="input_range"):
        FrequencyDistributionLoss(num_proj=8, input_range="[0,255]")


def test_backends(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # CPU tensors: "auto" is the reference, "triton" cannot run
    monkeypatch.delenv("STRSR_KERNEL_BACKEND", raising=False)
    from strsr.kernels.dispatch import resolve_kernel_backend

    loss = FrequencyDistributionLoss(num_proj=8, backend="reference")
    x, y = _images(1, 80, 11), _images(1, 80, 12)
    assert resolve_kernel_backend("auto", x) == "reference"  # CPU tensors without the interpreter
    assert resolve_kernel_backend(None, x) == "reference"
    # (the Triton path's values against the reference: tests/test_spectral_sw_kernel.py, under the interpreter)
    triton_loss = FrequencyDistributionLoss(num_proj=8, backend="triton")  # the device is only known per call
    with pytest.raises(KernelBackendError, match="backend 'triton' requested"):
        triton_loss(x, y)
    spec = torch.fft.fftn(torch.rand(1, 64, 8, 8), dim=(-2, -1))
    with pytest.raises(KernelBackendError, match="backend 'triton' requested"):
        _sliced_wasserstein(spec, spec, loss.projections[0], backend="triton")
    with pytest.raises(ValueError, match="unknown FDL backend"):
        FrequencyDistributionLoss(num_proj=8, backend="cuda")


def test_input_validation():
    loss = FrequencyDistributionLoss(num_proj=8)
    with pytest.raises(ValueError, match="at least 80x80"):
        loss(_images(1, 79, 0), _images(1, 79, 1))
    with pytest.raises(ValueError, match="same shape"):
        loss(_images(1, 80, 0), _images(2, 80, 1))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        loss(torch.zeros(1, 1, 80, 80), torch.zeros(1, 1, 80, 80))

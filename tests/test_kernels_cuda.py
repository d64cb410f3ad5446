"""The spectral (FDL) Triton kernels compiled for a real GPU, not interpreted: against the PyTorch reference on CUDA,
in fp32 and fp64, at sizes whose rows span several position and projection tiles. Runs under bench/gpu-check.sh
(STRSR_TEST_ON_GPU=1); on a CPU the same kernels are tested under the interpreter in test_spectral_sw_kernel.py."""

import pytest
import torch

from strsr.kernels.spectral_sw import spectral_sliced_wasserstein, spectral_sliced_wasserstein_ref

pytestmark = pytest.mark.triton


@pytest.fixture
def cuda(kernel_device):
    if kernel_device.type != "cuda":
        pytest.skip("compiled kernels need a GPU (bench/gpu-check.sh); test_spectral_sw_kernel interprets them")
    return kernel_device


def _inputs(shape, num_proj, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    spec_x = torch.fft.fftn(torch.relu(torch.randn(shape, generator=gen)), dim=(-2, -1))
    spec_y = torch.fft.fftn(torch.relu(torch.randn(shape, generator=gen)), dim=(-2, -1))
    proj = torch.randn(num_proj, shape[1], 5, 5, generator=gen)
    proj = proj / proj.flatten(1).norm(dim=1)[:, None, None, None]
    return spec_x.to(device), spec_y.to(device), proj.to(device)


def _value_and_grad(backend, spec_x, spec_y, proj, dtype, grad_out):
    x = spec_x.to(dtype).requires_grad_()
    out = spectral_sliced_wasserstein(x, spec_y.to(dtype), proj.to(x.real.dtype), 0.5, backend=backend)
    (grad,) = torch.autograd.grad(out, (x,), grad_out.to(out.dtype))
    return out.double(), grad.to(torch.complex128)


@pytest.mark.parametrize("shape", [(2, 3, 33, 33), (1, 16, 64, 64)], ids=lambda s: "x".join(map(str, s)))
def test_compiled_fp32_within_2x_of_the_torch_fp32_error(cuda, shape):
    spec_x, spec_y, proj = _inputs(shape, 64, cuda)
    grad_out = torch.randn(shape[0], generator=torch.Generator().manual_seed(1)).to(cuda)
    truth = _value_and_grad("reference", spec_x, spec_y, proj, torch.complex128, grad_out)
    ref32 = _value_and_grad("reference", spec_x, spec_y, proj, torch.complex64, grad_out)
    ker32 = _value_and_grad("triton", spec_x, spec_y, proj, torch.complex64, grad_out)
    for name, t, r, k in zip(("score", "grad"), truth, ref32, ker32):
        assert torch.isfinite(k).all(), name
        ker_err, ref_err = (k - t).abs().max().item(), (r - t).abs().max().item()
        assert ker_err <= 2 * ref_err + 1e-6 * t.abs().max().item(), (name, ker_err, ref_err)
    assert truth[1].abs().sum() > 0


def test_compiled_fp64_matches_the_reference(cuda):
    spec_x, spec_y, proj = _inputs((2, 3, 21, 19), 40, cuda, seed=2)
    grad_out = torch.tensor([0.7, -1.3], device=cuda)
    ref = _value_and_grad("reference", spec_x, spec_y, proj, torch.complex128, grad_out)
    ker = _value_and_grad("triton", spec_x, spec_y, proj, torch.complex128, grad_out)
    for r, k in zip(ref, ker):
        torch.testing.assert_close(k, r, rtol=1e-10, atol=1e-14)


def test_reference_equals_itself_across_devices(cuda):
    """The CUDA reference (the truth above) agrees with the CPU one: the comparison is not GPU against GPU only."""
    spec_x, spec_y, proj = _inputs((1, 3, 17, 17), 8, cuda, seed=3)
    gpu = spectral_sliced_wasserstein_ref(spec_x.to(torch.complex128), spec_y.to(torch.complex128), proj.double())
    x, y = (t.cpu().to(torch.complex128) for t in (spec_x, spec_y))
    cpu = spectral_sliced_wasserstein_ref(x, y, proj.cpu().double())
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-10, atol=1e-14)

"""Fused spectral sliced-Wasserstein kernel (strsr.kernels.spectral_sw) against its PyTorch reference, under
TRITON_INTERPRET=1 on tiny shapes (non-powers of two and primes), plus dispatch and the lazy triton import.

Tolerance (STYLE.md): against the float64 reference as truth, the fp32 kernel's error may be at most twice the fp32
reference's error plus atol = 1e-6 of the largest value; the fp64 kernel must match to ~1e-12.
"""

import subprocess
import sys

import pytest
import torch

from strsr.kernels import spectral_sw
from strsr.kernels.dispatch import KernelBackendError, use_kernel_backend
from strsr.kernels.spectral_sw import spectral_sliced_wasserstein, spectral_sliced_wasserstein_ref
from strsr.losses.fdl import FrequencyDistributionLoss

pytestmark = pytest.mark.triton


@pytest.fixture
def interpret(monkeypatch):
    """Run Triton kernels in the CPU interpreter for this test only (never session-wide: "auto" would follow it)."""
    pytest.importorskip("triton")
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("STRSR_KERNEL_BACKEND", raising=False)


@pytest.fixture
def no_interpret(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("STRSR_KERNEL_BACKEND", raising=False)


def _spectra(shape, seed):
    """FFT of non-negative (ReLU-like) random features, as the FDL sees them: complex64 (B, C, H, W)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.fft.fftn(torch.relu(torch.randn(shape, generator=gen)), dim=(-2, -1))


def _projections(num_proj, channels, patch=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    rand = torch.randn(num_proj, channels, patch, patch, generator=gen)
    return rand / rand.flatten(1).norm(dim=1)[:, None, None, None]


def _value_and_grads(fn, spec_x, spec_y, proj, dtype, grad_out, phase_weight=0.5, grad_y=False):
    """fn's (B,) scores and the gradients of sum(grad_out * scores) w.r.t. spec_x (and spec_y), in complex128."""
    x = spec_x.to(dtype).requires_grad_()
    y = spec_y.to(dtype).requires_grad_(grad_y)
    out = fn(x, y, proj.to(x.real.dtype), phase_weight)
    grads = torch.autograd.grad(out, (x, y) if grad_y else (x,), grad_out.to(out.dtype))
    return [out.double()] + [g.to(torch.complex128) for g in grads]


def _triton(*args):
    return spectral_sliced_wasserstein(*args, backend="triton")


def _assert_within_2x_of_torch(spec_x, spec_y, proj, grad_y=False):
    grad_out = torch.randn(spec_x.shape[0], generator=torch.Generator().manual_seed(9))
    truth = _value_and_grads(spectral_sliced_wasserstein_ref, spec_x, spec_y, proj, torch.complex128, grad_out,
                             grad_y=grad_y)  # fmt: skip
    ref32 = _value_and_grads(spectral_sliced_wasserstein_ref, spec_x, spec_y, proj, torch.complex64, grad_out,
                             grad_y=grad_y)  # fmt: skip
    ker32 = _value_and_grads(_triton, spec_x, spec_y, proj, torch.complex64, grad_out, grad_y=grad_y)
    for name, t, r, k in zip(("score", "grad x", "grad y"), truth, ref32, ker32):
        assert torch.isfinite(k).all(), name
        ker_err, ref_err = (k - t).abs().max().item(), (r - t).abs().max().item()
        assert ker_err <= 2 * ref_err + 1e-6 * t.abs().max().item(), (name, ker_err, ref_err)
    return truth


@pytest.mark.parametrize(
    "shape",
    [(2, 3, 7, 7), (2, 3, 11, 11), (1, 5, 9, 13), (1, 3, 13, 13)],  # L = 9, 49, 45, 81 (two position tiles)
    ids=lambda s: "x".join(map(str, s)),
)
def test_forward_and_grad_match_reference_fp32(interpret, shape):
    truth = _assert_within_2x_of_torch(_spectra(shape, 1), _spectra(shape, 2), _projections(8, shape[1]))
    assert truth[1].abs().sum() > 0


def test_float64_matches_reference_and_differentiates_both_spectra(interpret):
    """complex128 path, 40 projections (two 32-wide tiles), gradients to x and y, phase_weight 0.5."""
    shape, grad_out = (2, 3, 7, 9), torch.tensor([0.7, -1.3])
    spec_x, spec_y, proj = _spectra(shape, 3), _spectra(shape, 4), _projections(40, 3, seed=1)
    ref = _value_and_grads(spectral_sliced_wasserstein_ref, spec_x, spec_y, proj, torch.complex128, grad_out,
                           grad_y=True)  # fmt: skip
    ker = _value_and_grads(_triton, spec_x, spec_y, proj, torch.complex128, grad_out, grad_y=True)
    for r, k in zip(ref, ker):
        torch.testing.assert_close(k, r, rtol=1e-10, atol=1e-14)
    _assert_within_2x_of_torch(spec_x, spec_y, _projections(8, 3), grad_y=True)  # and the fp32 y gradient


def test_exact_zeros_tiny_and_signed_zero_bins(interpret):
    """Zero channels and bins, -0.0 parts (angle(-0 + 0j) = pi), 1e-30 and subnormal bins: finite, equal gradients."""
    shape = (2, 3, 7, 7)
    spec_x, spec_y = _spectra(shape, 5), _spectra(shape, 6)
    spec_x[0, 1] = 0  # a zero channel
    spec_x[1, :, 2:5, 2:5] = 0  # a zero block: positions whose whole patch is zero project to exactly 0
    spec_x[1, 0, 0, :3] = torch.complex(torch.tensor([-0.0, -0.0, 0.0]), torch.tensor([0.0, -0.0, -0.0]))
    spec_x[0, 2, 3, :3] = torch.tensor([1e-30, 1e-30j, 1e-41 - 1e-41j])  # tiny (phase grad ~1e30), subnormal
    spec_y[1] = 0  # a zero target sample
    proj = _projections(8, 3)
    grad_out = torch.tensor([1.0, -2.0])
    ref = _value_and_grads(spectral_sliced_wasserstein_ref, spec_x, spec_y, proj, torch.complex64, grad_out)
    ker = _value_and_grads(_triton, spec_x, spec_y, proj, torch.complex64, grad_out)
    assert all(torch.isfinite(t).all() for t in ker)
    torch.testing.assert_close(ker[0], ref[0], rtol=1e-6, atol=1e-6)
    subnormal = (spec_x.abs() > 0) & (spec_x.abs() < torch.finfo(torch.float32).tiny)
    torch.testing.assert_close(ker[1][~subnormal], ref[1][~subnormal], rtol=1e-5, atol=1e-9)  # 1e-30: ~1e27
    assert ker[1][0, 1].abs().max() == 0 and ker[1][1, 0, 0, :3].abs().max() == 0  # zero bins get zero gradient
    # Subnormal bins: the reference's z / hypot(z) keeps only the subnormal's few bits (1.7e-5 off here); the
    # kernel divides by max(|re|, |im|) first, so its unit vector for 1e-41 - 1e-41j is (1, -1) / sqrt 2 in fp32.
    torch.testing.assert_close(ker[1][subnormal], ref[1][subnormal], rtol=1e-4, atol=0)
    grad = ker[1][0, 2, 3, 2]
    assert grad.abs() > 0 and abs(grad.real + grad.imag) <= 1e-6 * grad.abs()


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_amplitude_and_phase_on_edge_values(interpret, dtype):
    """The amplitude/phase kernel's |z| and atan2 against torch.abs / torch.angle."""
    from strsr.kernels import spectral_sw_triton

    gen = torch.Generator().manual_seed(0)
    mags = torch.logspace(-30, 30, 61, dtype=torch.float64)
    angles = torch.rand(61, generator=gen, dtype=torch.float64) * 6.4 - 3.2
    tiny = 1e-41 if dtype == torch.complex64 else 5e-324  # subnormal
    special = torch.tensor([0.0, -0.0, 1.0, -1.0, 0.2679491924311227, -3.0, tiny], dtype=torch.float64)
    re_s, im_s = torch.meshgrid(special, special, indexing="ij")
    diagonals = torch.tensor([[1.0, -1.0, 1.0, -1.0, 2.0], [1.0, 1.0, -1.0, -1.0, 2 * 0.2679491924311227]],
                             dtype=torch.float64)  # fmt: skip
    re = torch.cat([mags * angles.cos(), re_s.flatten(), diagonals[0]])
    im = torch.cat([mags * angles.sin(), im_s.flatten(), diagonals[1]])
    z = torch.complex(re, im).to(dtype)[None, None, None, :]  # (1, 1, 1, N)
    out = spectral_sw_triton.amplitude_phase(z)[:, 0, 0]  # (2, N): amplitude, phase
    eps = torch.finfo(z.real.dtype).eps
    torch.testing.assert_close(out[0], z.abs()[0, 0, 0], rtol=2 * eps, atol=0)
    torch.testing.assert_close(out[1], z.angle()[0, 0, 0], rtol=0, atol=8 * eps)
    zero = (z.real == 0) & (z.imag == 0)
    assert torch.equal(out[1][zero[0, 0, 0]], z.angle()[zero])  # signed zeros: exactly 0, pi or -pi


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128])
def test_projection_and_sort_chunks_give_the_same_result(interpret, monkeypatch, dtype):
    from strsr.kernels import spectral_sw_triton

    shape = (2, 3, 7, 7)  # L = 9
    spec_x, spec_y, proj = _spectra(shape, 7), _spectra(shape, 8), _projections(8, 3)
    grad_out = torch.tensor([1.0, 0.5])
    whole = _value_and_grads(_triton, spec_x, spec_y, proj, dtype, grad_out, grad_y=True)
    monkeypatch.setattr(spectral_sw_triton, "CONV_CHUNK_ELEMENTS", 2 * 2 * 9 * 3)  # 3 projections a call: 3, 3, 2
    monkeypatch.setattr(spectral_sw_triton, "SORT_CHUNK_ELEMENTS", 5 * 9)  # sorts of 5 rows, and of the rest
    chunked = _value_and_grads(_triton, spec_x, spec_y, proj, dtype, grad_out, grad_y=True)
    tol = dict(rtol=1e-5, atol=1e-9) if dtype == torch.complex64 else dict(rtol=1e-12, atol=1e-15)  # sum order
    for w, c in zip(whole, chunked):
        torch.testing.assert_close(c, w, **tol)


def test_packed_sort_orders_each_row_and_keeps_positions(interpret):
    """Rows with ties, signed zeros, infinities, tiny and huge magnitudes: decoding the sorted keys' positions must
    give each row's values in torch.sort's order, rows apart, and a permutation of each row's positions."""
    from strsr.kernels import spectral_sw_triton

    gen = torch.Generator().manual_seed(0)
    num_pos = 37
    rows = torch.randn(6, num_pos, generator=gen) * torch.logspace(-30, 30, 6)[:, None]
    rows[0, :10] = 0.5  # ties
    rows[1, :4] = torch.tensor([0.0, -0.0, float("inf"), -float("inf")])
    rows[2] = -rows[2].abs() - 1e30  # a row of large negatives beside rows of small values
    rows[3, 5:9] = torch.tensor([1e-45, -1e-45, 1e-38, -1e-38])  # subnormal and near-tiny
    keys = spectral_sw_triton.sort_packed(rows)
    bits = spectral_sw_triton.pos_bits(num_pos)
    positions = keys & ((1 << bits) - 1)
    assert torch.equal(keys >> (32 + bits), torch.arange(6)[:, None].expand(6, num_pos))  # rows stay apart
    assert torch.equal(positions.sort(dim=1).values, torch.arange(num_pos).expand(6, num_pos))
    assert torch.equal(rows.gather(1, positions), rows.sort(dim=1).values)


def test_packed_sort_rows_fit_their_bit_field(interpret, monkeypatch):
    """However much memory a sort may take, its rows' keys stay below 2^63 (the sign bit would reorder them)."""
    from strsr.kernels import spectral_sw_triton

    monkeypatch.setattr(spectral_sw_triton, "SORT_CHUNK_ELEMENTS", 2**62)
    for num_pos in (1, 2, 9, 1000, 2**20, 2**20 + 1, 2**30):
        rows, bits = spectral_sw_triton.rows_per_sort(num_pos), spectral_sw_triton.pos_bits(num_pos)
        assert num_pos <= 2**bits and rows >= 1
        assert (rows - 1) << (32 + bits) | (2**32 - 1) << bits | (num_pos - 1) < 2**63  # the largest key
        assert rows << (32 + bits) >= 2**62  # and no smaller a field than that


class _PeakMemory:
    """Peak bytes of the tensor storages created inside the block and alive at once (CPU or any device): each
    op's outputs are counted until their storage is freed. Deterministic, unlike the process's resident set."""

    def __enter__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        tracker = self
        self.live, self.current, self.peak = set(), 0, 0

        class Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                for t in torch.utils._pytree.tree_leaves(out):
                    if isinstance(t, torch.Tensor):
                        tracker._track(t.untyped_storage())
                return out

        self.mode = Mode()
        self.mode.__enter__()
        return self

    def _track(self, storage):
        import weakref

        key = storage.data_ptr()
        if key == 0 or key in self.live:
            return
        self.live.add(key)
        self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._release, key, storage.nbytes())

    def _release(self, key, nbytes):
        self.live.discard(key)
        self.current -= nbytes

    def __exit__(self, *exc):
        self.mode.__exit__(*exc)


def _peak_forward_backward(fn, spec_x, spec_y, proj):
    x = spec_x.clone().requires_grad_()
    with _PeakMemory() as memory:
        torch.autograd.grad(fn(x, spec_y, proj, 1.0).sum(), x)
    return memory.peak


def test_reference_peak_memory_is_at_most_the_official_fdl(no_interpret):
    """The reference computes amplitude and phase in separate calls like the official FDL's layer, so its peak
    (forward + backward, x with grad, a target without) is no higher; one concatenated call held both halves'
    projections, sorted values and indices at once (27% over the official at 256^2)."""
    from strsr.bench.kernels_fdl import official_layer_score

    shape = (2, 8, 24, 24)
    spec_x, spec_y, proj = _spectra(shape, 1), _spectra(shape, 2), _projections(16, 8)
    official = _peak_forward_backward(official_layer_score, spec_x, spec_y, proj)
    reference = _peak_forward_backward(spectral_sliced_wasserstein_ref, spec_x, spec_y, proj)
    assert official > 16 * 400 * 2 * 4 * 3  # at least one component's x and y projections and x's sort indices
    assert reference <= official, (reference, official)


def test_fdl_layers_match_reference(interpret):
    """The op on the FDL's own relu4_4 / relu5_4 spectra of an 80x80 image (L = 36 and L = 1), forward and x-grad.

    The whole FrequencyDistributionLoss(backend="triton", num_proj=2) at 80x80 takes ~145 s in the interpreter
    (relu1_2: 64 channels x 80^2), so the loss is checked per layer here and its routing in the next test.
    """
    loss = FrequencyDistributionLoss(num_proj=2, seed=1)
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(1, 3, 80, 80, generator=gen) * 2 - 1, torch.rand(1, 3, 80, 80, generator=gen) * 2 - 1
    with torch.no_grad():
        feats_x, feats_y = loss.features(x), loss.features(y)
    for i in (3, 4):
        spec_x, spec_y = torch.fft.fftn(feats_x[i], dim=(-2, -1)), torch.fft.fftn(feats_y[i], dim=(-2, -1))
        _assert_within_2x_of_torch(spec_x, spec_y, loss.projections[i])


def test_fdl_triton_backend_routes_every_layer_through_the_op(interpret, monkeypatch):
    calls = []

    class Recorder:
        @staticmethod
        def apply(spec_x, spec_y, projections, phase_weight):
            calls.append((spec_x.shape, projections.shape, phase_weight, spec_x.requires_grad))
            return spectral_sliced_wasserstein_ref(spec_x, spec_y, projections, phase_weight)

    monkeypatch.setattr(spectral_sw, "SpectralSlicedWassersteinFunction", Recorder)
    gen = torch.Generator().manual_seed(1)
    x, y = torch.rand(1, 3, 80, 80, generator=gen) * 2 - 1, torch.rand(1, 3, 80, 80, generator=gen) * 2 - 1
    value = FrequencyDistributionLoss(num_proj=2, phase_weight=0.5, backend="triton")(x.requires_grad_(), y)
    assert value.item() == FrequencyDistributionLoss(num_proj=2, phase_weight=0.5, backend="reference")(x, y).item()
    assert [(c[0][1], c[1], c[2], c[3]) for c in calls] == [
        (ch, (2, ch, 5, 5), 0.5, True) for ch in (64, 128, 256, 512, 512)
    ]
    calls.clear()
    FrequencyDistributionLoss(num_proj=2, backend="auto")(x, y)  # "auto" picks Triton under the interpreter
    assert len(calls) == 5


def test_dispatch(interpret, monkeypatch):
    from strsr.kernels import spectral_sw_triton

    shape = (1, 3, 6, 6)
    spec_x, spec_y, proj = _spectra(shape, 1), _spectra(shape, 2), _projections(4, 3)
    used = []
    monkeypatch.setattr(spectral_sw_triton, "forward", lambda *a: used.append("triton") or (torch.zeros(1), None, None))
    ref = spectral_sliced_wasserstein_ref(spec_x, spec_y, proj)
    spectral_sliced_wasserstein(spec_x, spec_y, proj)  # "auto" under the interpreter: Triton
    assert used == ["triton"]
    with use_kernel_backend("reference"):
        assert torch.equal(spectral_sliced_wasserstein(spec_x, spec_y, proj), ref)
    monkeypatch.setenv("STRSR_KERNEL_BACKEND", "reference")
    assert torch.equal(spectral_sliced_wasserstein(spec_x, spec_y, proj), ref)
    assert used == ["triton"]
    monkeypatch.delenv("TRITON_INTERPRET")
    monkeypatch.delenv("STRSR_KERNEL_BACKEND")
    assert torch.equal(spectral_sliced_wasserstein(spec_x, spec_y, proj, backend="auto"), ref)  # CPU: reference
    with pytest.raises(KernelBackendError, match="kernel backend 'triton' requested"):
        spectral_sliced_wasserstein(spec_x, spec_y, proj, backend="triton")
    with pytest.raises(ValueError, match="unknown kernel backend"):
        spectral_sliced_wasserstein(spec_x, spec_y, proj, backend="cuda")


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
def test_triton_input_validation(interpret):
    spec, proj = _spectra((1, 3, 6, 6), 1), _projections(4, 3)
    with pytest.raises(TypeError, match="projections must be torch.float32"):
        _triton(spec, spec, proj.double())
    with pytest.raises(TypeError, match="complex64 or complex128"):
        _triton(spec.to(torch.complex32), spec.to(torch.complex32), proj.half())
    with pytest.raises(ValueError, match="smaller than the 5x5 projections"):
        _triton(spec[..., :4], spec[..., :4], proj)
    with pytest.raises(ValueError, match="do not fit 3 channels"):
        _triton(spec, spec, proj[:, :2])
    with pytest.raises(NotImplementedError, match="no gradient for the projections"):
        _triton(spec, spec, proj.clone().requires_grad_())


def test_import_and_reference_work_without_triton(no_interpret):
    code = """
import sys
sys.modules["triton"] = None  # import triton now raises ImportError, as on a machine without it
import os
os.environ["TRITON_INTERPRET"] = "1"
import torch
from strsr.kernels import spectral_sw
from strsr.kernels.dispatch import KernelBackendError
from strsr.losses.fdl import FrequencyDistributionLoss
spec = torch.fft.fftn(torch.rand(1, 2, 6, 6), dim=(-2, -1))
proj = torch.rand(3, 2, 5, 5)
out = spectral_sw.spectral_sliced_wasserstein(spec, spec * 2, proj)  # "auto" without triton: the reference
assert torch.equal(out, spectral_sw.spectral_sliced_wasserstein_ref(spec, spec * 2, proj))
try:
    spectral_sw.spectral_sliced_wasserstein(spec, spec, proj, backend="triton")
except KernelBackendError as err:
    assert "not installed" in str(err)
else:
    raise AssertionError("no KernelBackendError")
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr

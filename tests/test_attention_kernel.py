"""The Triton attention kernels (under TRITON_INTERPRET=1 on CPU) against the references, and in the FLUX.2 DiT.

Tolerance rule (flash-attention's): the kernel's error against an fp64 reference may be at most twice PyTorch's own
error at the same precision, plus a small atol.
"""

import pytest
import torch

from strsr.kernels.attention import (
    attention,
    attention_ref,
    attention_rmsnorm_rope,
    attention_rmsnorm_rope_ref,
    rmsnorm_rope_ref,
)
from strsr.kernels.dispatch import KernelBackendError, resolve_kernel_backend, use_kernel_backend
from strsr.spec import ModelSpec

pytestmark = pytest.mark.triton


def _inputs(shape, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=gen).to(device, dtype).requires_grad_() for _ in range(3)]


def _rope(n, d, seed=1):
    angles = torch.randn(n, d // 2, generator=torch.Generator().manual_seed(seed)).repeat_interleave(2, -1)
    return angles.cos(), angles.sin()


def _errors(fn, ref_fn, args, grad_out):
    """Max abs error of fn's output and input gradients against ref_fn in float64."""
    out = fn(*args)
    grads = torch.autograd.grad(out, [a for a in args if a.requires_grad], grad_out.to(out.dtype))
    exact_args = [a.detach().double().requires_grad_(a.requires_grad) for a in args]
    exact = ref_fn(*exact_args)
    exact_grads = torch.autograd.grad(exact, [a for a in exact_args if a.requires_grad], grad_out.double())
    return [(out.double() - exact).abs().max().item()] + [
        (g.double() - e).abs().max().item() for g, e in zip(grads, exact_grads)
    ]


@pytest.mark.parametrize("shape", [(1, 2, 16, 16), (2, 1, 37, 32), (1, 1, 31, 64), (1, 1, 13, 128)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_attention_forward_and_gradients(kernel_device, shape, dtype):
    if dtype == torch.bfloat16 and kernel_device.type == "cpu":
        pytest.skip("Triton's CPU interpreter miscomputes bf16 dots (numpy has no bfloat16); the GPU check runs bf16")
    q, k, v = _inputs(shape, dtype, kernel_device)
    grad_out = torch.randn(shape, generator=torch.Generator().manual_seed(9)).to(kernel_device)
    kernel = _errors(lambda *a: attention(*a, backend="triton"), attention_ref, (q, k, v), grad_out)
    torch_err = _errors(lambda *a: attention(*a, backend="reference"), attention_ref, (q, k, v), grad_out)
    atol = 1e-5 if dtype == torch.float32 else 1e-3
    for name, got, base in zip(("out", "dq", "dk", "dv"), kernel, torch_err):
        assert got <= 2 * base + atol, (name, got, base)


def test_key_padding_mask(kernel_device):
    q, k, v = _inputs((3, 2, 37, 32), torch.float32, kernel_device)
    key_mask = torch.ones(3, 37, dtype=torch.bool, device=kernel_device)
    key_mask[1, 17:] = False  # the second sample is padded after 17 tokens
    key_mask[2, :20] = False  # the third's padding comes first: whole key blocks of it before any valid key
    grad_out = torch.randn(q.shape, generator=torch.Generator().manual_seed(5)).to(kernel_device)
    got = _errors(lambda q, k, v: attention(q, k, v, key_mask, backend="triton"),
                  lambda q, k, v: attention_ref(q, k, v, key_mask), (q, k, v), grad_out)  # fmt: skip
    base = _errors(lambda q, k, v: attention(q, k, v, key_mask, backend="reference"),
                   lambda q, k, v: attention_ref(q, k, v, key_mask), (q, k, v), grad_out)  # fmt: skip
    for name, g, b in zip(("out", "dq", "dk", "dv"), got, base):
        assert g <= 2 * b + 1e-5, (name, g, b)
    dk, dv = torch.autograd.grad(attention(q, k, v, key_mask, backend="triton"), (k, v), grad_out)
    assert dk[1, :, 17:].abs().max() == 0 and dv[2, :, :20].abs().max() == 0  # padding keys get no gradient


def test_fp16_gradients_at_large_logits(kernel_device):
    """Logits of 13-20: the scores are scaled in fp32 in the forward and the backward alike. Folding the scale into q
    before rounding q to fp16 (while the backward rescales the unrounded q) put dV at 6.9x SDPA's error here."""
    shape = (1, 2, 48, 64)
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(shape, generator=gen)
    q = (1.3 * base).to(kernel_device, torch.float16).requires_grad_()
    k = (1.3 * (base + 0.5 * torch.randn(shape, generator=gen))).to(kernel_device, torch.float16).requires_grad_()
    v = torch.randn(shape, generator=gen).to(kernel_device, torch.float16).requires_grad_()
    logits = q.double() @ k.double().transpose(-1, -2) / 8
    assert 12 < logits.amax(-1).median() and logits.max() > 19
    grad_out = torch.randn(shape, generator=torch.Generator().manual_seed(9)).to(kernel_device)
    kernel = _errors(lambda *a: attention(*a, backend="triton"), attention_ref, (q, k, v), grad_out)
    torch_err = _errors(lambda *a: attention(*a, backend="reference"), attention_ref, (q, k, v), grad_out)
    for name, got, base_err in zip(("out", "dq", "dk", "dv"), kernel, torch_err):
        assert got <= 2 * base_err + 1e-3, (name, got, base_err)


def test_strided_inputs_are_not_copied(kernel_device):
    """diffusers' (B, N, H, D) projections transposed to (B, H, N, D) go in as they are (strides passed), and the
    output comes back in the same layout, so the processors' transpose back is free."""
    from torch.utils._python_dispatch import TorchDispatchMode

    from strsr.kernels import attention_triton

    class Ops(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.names = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.names.append(str(func))
            return func(*args, **(kwargs or {}))

    gen = torch.Generator().manual_seed(0)
    q, k, v, grad_out = (torch.randn(2, 37, 2, 32, generator=gen).to(kernel_device).transpose(1, 2) for _ in range(4))
    with Ops() as ops:
        out = attention(q, k, v, backend="triton")
    assert "aten.clone.default" not in ops.names and out.stride() == q.stride()
    torch.testing.assert_close(out, attention_ref(q, k, v), rtol=1e-5, atol=1e-5)
    o, lse = attention_triton.attention_forward(q, k, v)
    with Ops() as ops:
        grads = attention_triton.attention_backward(q, k, v, o, lse, grad_out)
    assert "aten.clone.default" not in ops.names
    exact = [t.double().requires_grad_() for t in (q, k, v)]
    expected = torch.autograd.grad(attention_ref(*exact), exact, grad_out.double())
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_rmsnorm_rope_pass_matches_reference(kernel_device, dtype):
    """The fused prologue's one pass over q or k: the reference's fp32 math, rounded once to the input dtype."""
    from strsr.kernels import attention_triton

    gen = torch.Generator().manual_seed(2)
    x = (3 * torch.randn(2, 37, 3, 32, generator=gen)).to(kernel_device, dtype).transpose(1, 2)  # (B, H, N, D)
    weights = (1 + 0.1 * torch.randn(2, 32, generator=gen)).to(kernel_device)
    cos, sin = (t.to(kernel_device) for t in _rope(37, 32))
    got = attention_triton.rmsnorm_rope(x, weights, 11, cos, sin, 1e-6)
    want = rmsnorm_rope_ref(x, weights, 11, cos, sin, 1e-6)
    assert got.dtype == dtype and got.stride() == x.stride()
    ulps = 4 if dtype == torch.float32 else 1  # fp32: another order of the same operations; fp16: one rounding
    bound = ulps * torch.finfo(dtype).eps * want.float().abs().clamp_min(1)
    assert ((got.float() - want.float()).abs() <= bound).all()


@pytest.mark.parametrize("shape,split", [((1, 2, 19, 16), 5), ((2, 1, 23, 32), 0)])
def test_fused_norm_rope_prologue(kernel_device, shape, split):
    q, k, v = _inputs(shape, torch.float32, kernel_device)
    n, d = shape[2], shape[3]
    gen = torch.Generator().manual_seed(3)
    q_w = (1 + 0.1 * torch.randn(2, d, generator=gen)).to(kernel_device).requires_grad_()
    k_w = (1 + 0.1 * torch.randn(2, d, generator=gen)).to(kernel_device).requires_grad_()
    cos, sin = (t.to(kernel_device) for t in _rope(n, d))
    grad_out = torch.randn(shape, generator=torch.Generator().manual_seed(4)).to(kernel_device)

    def kernel(q, k, v, qw, kw):
        return attention_rmsnorm_rope(q, k, v, qw, kw, cos, sin, split, backend="triton")

    def reference(q, k, v, qw, kw):
        return attention_rmsnorm_rope_ref(q, k, v, qw, kw, split, cos.to(q.dtype), sin.to(q.dtype))

    def torch_path(q, k, v, qw, kw):
        return attention_rmsnorm_rope(q, k, v, qw, kw, cos, sin, split, backend="reference")

    got = _errors(kernel, reference, (q, k, v, q_w, k_w), grad_out)
    base = _errors(torch_path, reference, (q, k, v, q_w, k_w), grad_out)
    for name, g, b in zip(("out", "dq", "dk", "dv", "dqw", "dkw"), got, base):
        assert g <= 2 * b + 1e-5, (name, g, b)


def test_flux2_dit_with_kernel_attention_equals_sdpa(kernel_device):
    from strsr.model.attention_processors import set_attention_backend
    from strsr.model.build import build_generator

    spec = ModelSpec(preset="tiny", lora_rank=0, device=str(kernel_device), attention="triton-fused",
                     random_weights=True)
    model = build_generator(spec)
    transformer = model.diffusers_transformer
    assert type(transformer.transformer_blocks[0].attn.processor).__name__ == "KernelFlux2AttnProcessor"
    state = torch.randn(1, 192, 4, 5, generator=torch.Generator().manual_seed(0)).to(kernel_device)
    condition = model.conditioning(1)
    with torch.no_grad():
        condition.tokens.normal_()
    outputs, grads = {}, {}
    for name, backend, fused in (("sdpa", "sdpa", False), ("triton", "triton", False), ("fused", "triton", True)):
        set_attention_backend(transformer, backend, fused_prologue=fused)
        transformer.zero_grad()
        v = model.velocity(state, condition)
        v.square().mean().backward()
        outputs[name] = v.detach()
        grads[name] = transformer.transformer_blocks[0].attn.to_q.weight.grad.clone()
    for name in ("triton", "fused"):
        torch.testing.assert_close(outputs[name], outputs["sdpa"], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(grads[name], grads["sdpa"], rtol=1e-3, atol=1e-6)


def test_zimage_dit_with_kernel_attention_equals_sdpa(kernel_device):
    from strsr.model.backbones import Condition
    from strsr.model.build import build_generator

    state = torch.randn(2, 48, 6, 4, generator=torch.Generator().manual_seed(0)).to(kernel_device)
    tokens = torch.randn(2, 40, 64, generator=torch.Generator().manual_seed(1)).to(kernel_device)
    # captions of 40 and 3 tokens pad to 64 and 32: the batch's sequences differ, so Z-Image masks keys
    mask = torch.tensor([[True] * 40, [True] * 3 + [False] * 37], device=kernel_device)
    outputs = {}
    for backend in ("sdpa", "triton"):
        spec = ModelSpec(preset="tiny-zimage", lora_rank=0, device=str(kernel_device), attention=backend,
                         random_weights=True)
        model = build_generator(spec)
        v = model.velocity(state, Condition(tokens, mask))
        v.square().mean().backward()
        outputs[backend] = (v.detach(), model.diffusers_transformer.layers[0].attention.to_q.weight.grad.clone())
    torch.testing.assert_close(outputs["triton"][0], outputs["sdpa"][0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(outputs["triton"][1], outputs["sdpa"][1], rtol=1e-3, atol=1e-6)


def test_dispatch_rules(monkeypatch):
    cpu = torch.zeros(1)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("STRSR_KERNEL_BACKEND", raising=False)
    assert resolve_kernel_backend(None, cpu) == "reference"
    with pytest.raises(KernelBackendError, match="needs a CUDA device"):
        resolve_kernel_backend("triton", cpu)
    monkeypatch.setenv("STRSR_KERNEL_BACKEND", "reference")
    with use_kernel_backend("auto"):
        assert resolve_kernel_backend(None, cpu) == "reference"  # no interpreter: auto means reference here
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        assert resolve_kernel_backend(None, cpu) == "triton"
        assert resolve_kernel_backend("reference", cpu) == "reference"  # the argument wins over the context
    assert resolve_kernel_backend(None, cpu) == "reference"  # back to the environment variable
    with pytest.raises(ValueError, match="unknown kernel backend"):
        resolve_kernel_backend("cuda", cpu)


def test_import_needs_no_triton():
    import subprocess
    import sys

    code = "import sys; sys.modules['triton'] = None; import strsr, strsr.kernels.attention, strsr.kernels.dispatch"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_kernel_rejects_unsupported_shapes(kernel_device):
    q, k, v = _inputs((1, 1, 8, 24), torch.float32, kernel_device)
    with pytest.raises(ValueError, match="head dim 24"):
        attention(q, k, v, backend="triton")

"""strsr-export on the tiny preset: merged weights, ONNX graphs vs PyTorch in ONNX Runtime, the manifest, the ONNX
backend of strsr-upscale against the PyTorch one on a real photo, and clear errors."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from strsr.export.cli import main as export_main
from strsr.export.onnx_export import check_parity, graph_specs
from strsr.inference.cli import main as upscale_main
from strsr.inference.manifest import ManifestError, check_manifest
from strsr.inference.pipeline import SuperResolver
from strsr.spec import ModelSpec

onnx = pytest.importorskip("onnx", reason="strsr-export needs the export extra (onnx, onnxruntime)")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    assert export_main(["--preset", "tiny", "-o", str(out)]) == 0
    return out


def test_manifest_contents(exported):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["format"] == "strsr.export.v1" and manifest["preset"] == "tiny"
    assert manifest["precision"] == "fp32" and manifest["opset"] == 23 and manifest["t1"] == 0.8
    assert manifest["attention_op"] == "onnxruntime" and manifest["latent"]["mode"] == "mode"  # pixel shuffle: no noise
    assert len(manifest["weights_sha256"]) == 64 and manifest["tools"]["onnxruntime"]
    assert set(manifest["graphs"]) == {"vae_encoder", "dit_onestep", "vae_decoder"}
    dit = manifest["graphs"]["dit_onestep"]
    assert dit["inputs"]["state"] == ["batch", 192, "state_height", "state_width"]
    assert dit["inputs"]["condition"] == ["batch", "condition_tokens", 64] and dit["outputs"] == ["z0"]
    assert all(g["parity_max_abs_diff"] <= 1e-4 for g in manifest["graphs"].values())


def test_graphs_match_pytorch_at_other_sizes(exported):
    resolver = SuperResolver.from_preset("tiny", device="cpu")
    for spec in graph_specs(resolver.model, 1024, condition_tokens=1):
        for scale in (1, 3):  # the traced spatial size, and 3x it
            assert check_parity(resolver.model, spec, exported / f"{spec.name}.onnx", scale=scale) <= 1e-4


def _ops(path):
    return [n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node]


def test_attention_is_fused_for_onnx_runtime_and_standard_for_tensorrt(exported, tmp_path):
    """No graph builds the N x N scores: ONNX Runtime's MultiHeadAttention by default, the standard Attention node
    with --attention-op onnx (what TensorRT parses); both match PyTorch."""
    ops = _ops(exported / "dit_onestep.onnx")
    assert ops.count("MultiHeadAttention") == 3 and "Softmax" not in ops and "Attention" not in ops
    out = tmp_path / "standard"
    assert export_main(["--preset", "tiny", "-o", str(out), "--attention-op", "onnx"]) == 0
    ops = _ops(out / "dit_onestep.onnx")
    assert ops.count("Attention") == 3 and "Softmax" not in ops and "MultiHeadAttention" not in ops
    resolver = SuperResolver.from_preset("tiny", device="cpu")
    for folder in (exported, out):
        spec = next(s for s in graph_specs(resolver.model, 1024, condition_tokens=1) if s.name == "dit_onestep")
        assert check_parity(resolver.model, spec, folder / "dit_onestep.onnx", scale=3) <= 1e-4
    with pytest.raises(SystemExit):
        export_main(["--preset", "tiny", "-o", str(out), "--trt", "--attention-op", "onnxruntime"])


def test_dit_graph_has_no_float64(exported):
    graph = onnx.load(str(exported / "dit_onestep.onnx")).graph
    assert not any(init.data_type == onnx.TensorProto.DOUBLE for init in graph.initializer)
    casts = [a.i for n in graph.node if n.op_type == "Cast" for a in n.attribute if a.name == "to"]
    assert onnx.TensorProto.DOUBLE not in casts  # TensorRT rejects float64


def test_onnx_backend_matches_torch_on_a_photo(exported, tmp_path):
    Image.fromarray(data.coffee()[100:196, 200:328]).save(tmp_path / "coffee.png")
    assert upscale_main([str(tmp_path / "coffee.png"), "-o", str(tmp_path / "torch"), "--quiet"]) == 0
    assert upscale_main([str(tmp_path / "coffee.png"), "-o", str(tmp_path / "onnx"), "--runtime", "onnx",
                         "--engine-dir", str(exported), "--quiet"]) == 0  # fmt: skip
    a = np.asarray(Image.open(tmp_path / "torch" / "coffee.png")).astype(np.float64)
    b = np.asarray(Image.open(tmp_path / "onnx" / "coffee.png")).astype(np.float64)
    mse = ((a - b) ** 2).mean()
    assert a.shape == (384, 512, 3) and (mse == 0 or 10 * np.log10(255**2 / mse) >= 45)


def test_reexport_only_when_weights_change(exported, tmp_path, caplog):
    before = (exported / "dit_onestep.onnx").stat().st_mtime_ns
    assert export_main(["--preset", "tiny", "-o", str(exported)]) == 0
    assert (exported / "dit_onestep.onnx").stat().st_mtime_ns == before  # same hash: skipped
    (tmp_path / "other").mkdir()
    assert export_main(["--preset", "tiny", "--random-weights", "-o", str(tmp_path / "other")]) == 0
    a = json.loads((exported / "manifest.json").read_text())["weights_sha256"]
    b = json.loads((tmp_path / "other" / "manifest.json").read_text())["weights_sha256"]
    assert a != b


def test_mismatched_manifest_and_missing_tensorrt_are_clear(exported, tmp_path, caplog):
    with pytest.raises(ManifestError, match="exported for preset 'tiny', not 'tiny-zimage'"):
        check_manifest(exported, preset="tiny-zimage")
    Image.fromarray(data.coffee()[:32, :32]).save(tmp_path / "c.png")
    code = upscale_main([str(tmp_path / "c.png"), "-o", str(tmp_path / "o"), "--runtime", "onnx", "--engine-dir",
                         str(tmp_path), "--quiet"])  # fmt: skip
    assert code == 2 and "no export manifest" in caplog.text
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(SystemExit, match="--trt needs TensorRT, which is not installed"):
            export_main(["--preset", "tiny", "-o", str(tmp_path / "t"), "--trt"])
        assert not (tmp_path / "t").exists()  # refused before any work


def test_merged_export_weights_reproduce_the_lora_model(randomise_lora):
    from strsr.model.build import build_generator
    from strsr.model.lora import merge_lora

    model = build_generator(ModelSpec(preset="tiny", seed=3, random_weights=True))
    randomise_lora(model.transformer, seed=4)
    image = torch.rand(1, 3, 32, 40) * 2 - 1
    with torch.no_grad():
        before = model(image)
        model.transformer = merge_lora(model.transformer)
        assert (model(image) - before).abs().max() < 1e-5


def test_zimage_exports_with_real_valued_rope(tmp_path):
    out = tmp_path / "zimage"
    assert export_main(["--preset", "tiny-zimage", "-o", str(out), "--tile", "64"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(g["parity_max_abs_diff"] <= 1e-4 for g in manifest["graphs"].values())
    assert manifest["graphs"]["dit_onestep"]["inputs"]["state"] == [1, 48, 16, 16]  # static: one 64-px tile
    graph = onnx.load(str(out / "dit_onestep.onnx")).graph
    complex_types = (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128)
    assert not any(init.data_type in complex_types for init in graph.initializer)
    # the export-time RoPE swap is undone: the live model is diffusers' own again
    from diffusers.models.transformers.transformer_z_image import RopeEmbedder

    resolver = SuperResolver.from_preset("tiny-zimage", device="cpu", tile=64, overlap=16)
    assert isinstance(resolver.model.diffusers_transformer.rope_embedder, RopeEmbedder)
    # end to end over several 64-px tiles: the static DiT graph takes the stored conditioning as it is
    lr = torch.from_numpy(data.coffee()[100:164, 200:264]).permute(2, 0, 1)[None].float() / 255
    onnx_out = SuperResolver.from_export(out, ModelSpec(preset="tiny-zimage"), tile=64, overlap=16).upscale_tensor(lr)
    assert _psnr(onnx_out, resolver.upscale_tensor(lr)) >= 45  # measured 131 dB


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / (a - b).pow(2).mean()))


def test_fp16_export_stays_close_to_fp32(tmp_path):
    out = tmp_path / "fp16"
    assert export_main(["--preset", "tiny", "-o", str(out), "--precision", "fp16"]) == 0
    assert json.loads((out / "manifest.json").read_text())["precision"] == "fp16"
    lr = torch.from_numpy(data.coffee()[100:164, 200:264]).permute(2, 0, 1)[None].float() / 255
    fp32 = SuperResolver.from_preset("tiny", device="cpu").upscale_tensor(lr)
    fp16 = SuperResolver.from_export(out, ModelSpec(preset="tiny")).upscale_tensor(lr)
    psnr = _psnr(fp32, fp16)
    assert psnr > 50, psnr  # measured 64.4 dB on the README sample


def test_large_graphs_keep_weights_in_external_data(tmp_path, monkeypatch):
    from strsr.export import onnx_export

    monkeypatch.setattr(onnx_export, "_EXTERNAL_DATA_BYTES", 1)  # treat the tiny DiT as a >2 GB one
    resolver = SuperResolver.from_preset("tiny", device="cpu")
    spec = next(g for g in graph_specs(resolver.model, 1024, condition_tokens=1) if g.name == "dit_onestep")
    path = onnx_export.export_graph(resolver.model, spec, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dit_onestep.onnx", "dit_onestep.onnx.data"]
    assert (tmp_path / "dit_onestep.onnx.data").stat().st_size > 4 * path.stat().st_size  # weights live there
    assert check_parity(resolver.model, spec, path) <= 1e-4


def _dequantized_matmuls(graph) -> set[str]:
    """Names of the MatMul/Gemm nodes with an input straight from a DequantizeLinear."""
    dequantized = {n.output[0] for n in graph.node if n.op_type == "DequantizeLinear"}
    return {n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and dequantized & set(n.input)}


def test_fp8_export_quantises_the_blocks_and_keeps_embedders_and_modulation(exported, tmp_path):
    pytest.importorskip("modelopt.onnx.quantization", reason="--precision fp8 needs the fp8 extra (NVIDIA ModelOpt)")
    from strsr.export.fp8 import high_precision_nodes

    out = tmp_path / "fp8"
    assert export_main(["--preset", "tiny", "-o", str(out), "--precision", "fp8", "--calibration-tiles", "4"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["precision"] == "fp8" and manifest["calibration"]["images"] == ["chelsea.png"]
    summary = manifest["graphs"]["dit_onestep"]["quantization"]
    assert summary["mode"] == "fp8_e4m3" and summary["calibration_tiles"] == 4 and summary["quantized_tensors"] > 0

    graph = onnx.load(str(out / "dit_onestep.onnx")).graph
    fp8 = onnx.TensorProto.FLOAT8E4M3FN
    assert any(init.data_type == fp8 for init in graph.initializer)  # weights stored in FP8
    kept = set(high_precision_nodes(exported / "dit_onestep.onnx"))  # same node names in the fp32 export
    linears = {n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and n.name.startswith("node_linear")}
    quantized = _dequantized_matmuls(graph)
    # tiny FLUX.2: timestep embedder (2), three modulations, x/context embedders, norm_out and proj_out
    assert len(kept & linears) == 9 and not kept & quantized
    assert linears - kept <= quantized  # every attention/MLP projection in the blocks runs in FP8

    # quality cost on a real photo, reported as PSNR against the fp32 PyTorch model
    lr = torch.from_numpy(data.coffee()[100:164, 200:264]).permute(2, 0, 1)[None].float() / 255
    reference = SuperResolver.from_preset("tiny", device="cpu").upscale_tensor(lr)
    psnr = _psnr(SuperResolver.from_export(out, ModelSpec(preset="tiny")).upscale_tensor(lr), reference)
    assert psnr > 45, psnr  # measured 52-56 dB on 256-px crops of coffee, astronaut, chelsea


def test_fp8_without_modelopt_is_a_clear_error(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "modelopt.onnx.quantization", None)  # makes the import fail
    from strsr.export.fp8 import require_modelopt

    with pytest.raises(SystemExit, match=r"--precision fp8 needs NVIDIA ModelOpt.*strsr\[fp8\]"):
        require_modelopt()


def test_sampling_encoder_graph_takes_the_posterior_noise(tmp_path, flux2_kl_preset, tiny_flux2_vae):
    """latent "sample": the encoder graph adds `noise` (B, C, H/s, W/s) and equals the PyTorch encode that draws
    the same noise from the same seeded generator, at a size other than the traced one."""
    import onnxruntime as ort

    from strsr.export.onnx_export import export_graph
    from strsr.model.backbones import build_transformer
    from strsr.model.conditioning import NullConditioning
    from strsr.model.generator import StrSRGenerator
    from strsr.model.latents import LatentCodec

    preset = flux2_kl_preset
    model = StrSRGenerator(preset, build_transformer(preset, seed=0), tiny_flux2_vae,
                           NullConditioning(preset.condition_width)).eval()  # fmt: skip
    spec = next(s for s in graph_specs(model, 64, condition_tokens=1) if s.name == "vae_encoder")
    assert list(spec.inputs) == ["image", "noise"] and spec.inputs["noise"][1:] == (4, 4, 6)
    path = export_graph(model, spec, tmp_path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    image = torch.rand(1, 3, 32, 40, generator=torch.Generator().manual_seed(2)) * 2 - 1
    noise = torch.randn(model.codec.latent_shape(image.shape), generator=torch.Generator().manual_seed(3))
    got = session.run(None, {"image": image.numpy(), "noise": noise.numpy()})[0]
    with torch.no_grad():
        want = model.codec.encode(image, torch.Generator().manual_seed(3))
        mode = LatentCodec(model.preset.family, model.preset.latents, model.vae, latent="mode").encode(image)
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-4)
    assert np.abs(got - mode.numpy()).max() > 1e-2  # the noise matters


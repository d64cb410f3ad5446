"""`--quantize` (torchao) and the merged LoRA of the inference path: the chosen linear layers and only those are
quantised, int8 weight-only stays close to fp32 on a photo, fp8 is refused where it cannot run, and the merged model
every inference entry point builds gives the unmerged model's output."""

import math

import pytest
import torch
from skimage import data
from torch import nn

from strsr.inference.pipeline import SuperResolver
from strsr.model.build import build_generator, build_inference_generator
from strsr.model.checkpoint import save_generator
from strsr.model.lora import base_transformer
from strsr.model.quantize import HIGH_PRECISION_MODULES, quantizable_linears, quantize_transformer
from strsr.spec import ModelSpec, SpecError

torchao = pytest.importorskip("torchao")


def _is_torchao_tensor(t) -> bool:
    """A torchao tensor subclass (Int8Tensor in torchao 0.18, AffineQuantizedTensor before), not a plain tensor."""
    return type(t).__module__.startswith("torchao.") and isinstance(t, torch.Tensor)


# The layers each tiny preset keeps in high precision, written out by hand from the diffusers classes (the
# embedders, timestep/modulation layers and the final norm/projection), not derived from HIGH_PRECISION_MODULES.
KEPT = {
    "tiny": {"time_guidance_embed.timestep_embedder.linear_1", "time_guidance_embed.timestep_embedder.linear_2",
             "double_stream_modulation_img.linear", "double_stream_modulation_txt.linear",
             "single_stream_modulation.linear", "x_embedder", "context_embedder", "norm_out.linear", "proj_out"},
    "tiny-zimage": {"all_x_embedder.2-1", "all_final_layer.2-1.linear", "all_final_layer.2-1.adaLN_modulation.1",
                    "noise_refiner.0.adaLN_modulation.0", "t_embedder.mlp.0", "t_embedder.mlp.2", "cap_embedder.1",
                    "layers.0.adaLN_modulation.0", "layers.1.adaLN_modulation.0"},
}  # fmt: skip
# measured: int8 weight-only vs fp32 on the astronaut crop below, the tiny preset's bundled weights: 78.2 dB (max
# abs difference 0.0017; the model itself is 37.8 dB from bicubic)
INT8_MIN_PSNR_DB = 70.0


def _photo(height=48, width=64):
    """A crop of a real photograph, (1, 3, h, w) in [0, 1]."""
    rgb = data.astronaut()[120 : 120 + height, 200 : 200 + width]
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return 10 * math.log10(1.0 / torch.mean((a.double() - b.double()) ** 2).item())


@pytest.mark.parametrize("preset", ["tiny", "tiny-zimage"])
def test_int8_weight_quantises_exactly_the_quantizable_linears(preset):
    model = build_inference_generator(ModelSpec(preset=preset, random_weights=True, device="cpu", seed=1))
    transformer = model.transformer
    linears = {name: m for name, m in transformer.named_modules() if type(m) is nn.Linear}
    chosen = set(quantizable_linears(transformer))
    assert chosen == set(linears) - KEPT[preset] and chosen
    before = {name: t.detach().clone() for name, t in transformer.state_dict().items()}
    vae_before = {name: t.clone() for name, t in model.vae.state_dict().items()}

    assert sorted(chosen) == quantize_transformer(transformer, "int8-weight")
    for name, module in transformer.named_modules():
        if name in chosen:
            assert _is_torchao_tensor(module.weight), name
            # int8 with one scale per output row: within half a step (max|row| / 127 / 2) of the fp32 weights
            w = before[f"{name}.weight"]
            step = w.abs().amax(dim=1, keepdim=True) / 127
            assert (module.weight.dequantize() - w).abs().le(step / 2 + 1e-7).all(), name
        else:  # the high-precision layers and every non-linear module: plain tensors, bit for bit unchanged
            for pname, p in module.named_parameters(recurse=False):
                assert type(p) is nn.Parameter and not _is_torchao_tensor(p.data), (name, pname)
                assert torch.equal(p, before[f"{name}.{pname}" if name else pname]), (name, pname)
    assert all(torch.equal(t, vae_before[k]) for k, t in model.vae.state_dict().items())  # the VAE stays fp32


def test_the_kept_list_covers_both_families_by_name():
    kept = {name for names in KEPT.values() for name in names}
    assert all(any(fragment in name for fragment in HIGH_PRECISION_MODULES) for name in kept)
    assert not any(fragment in "transformer_blocks.0.attn.to_q" for fragment in HIGH_PRECISION_MODULES)


def test_int8_weight_on_a_photo_is_within_a_psnr_of_fp32():
    lr = _photo()
    fp32 = SuperResolver.from_preset("tiny", device="cpu").upscale_tensor(lr)
    int8 = SuperResolver.from_preset("tiny", device="cpu", quantize="int8-weight").upscale_tensor(lr)
    bicubic = torch.nn.functional.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    assert fp32.shape == int8.shape == (1, 3, 192, 256)
    psnr = _psnr(int8, fp32)
    assert psnr >= INT8_MIN_PSNR_DB, psnr
    assert not torch.equal(int8, fp32)  # the weights really are int8
    assert _psnr(fp32, bicubic) < psnr - 10  # the model's own change is far larger than the quantisation's


def test_fp8_on_cpu_is_one_line_naming_the_flag_before_anything_is_built(monkeypatch):
    import strsr.model.build as build

    monkeypatch.setattr(build, "build_generator", lambda *a, **k: pytest.fail("built before refusing fp8"))
    with pytest.raises(SpecError, match=r"^--quantize fp8 needs .*sm_89\+.*int8-weight") as err:
        build_inference_generator(ModelSpec(preset="tiny", device="cpu", quantize="fp8"))
    assert "\n" not in str(err.value)


def test_quantising_an_unmerged_lora_is_refused():
    model = build_generator(ModelSpec(preset="tiny", random_weights=True, lora_rank=2, device="cpu"))
    with pytest.raises(ValueError, match="merge the LoRA before quantising"):
        quantize_transformer(model.transformer, "int8-weight")


def test_training_builder_refuses_inference_options():
    with pytest.raises(SpecError, match="--quantize and --compile are inference options"):
        build_generator(ModelSpec(preset="tiny", device="cpu", quantize="int8-weight"))


def test_merged_lora_inference_equals_the_unmerged_model(tmp_path, randomise_lora):
    spec = ModelSpec(preset="tiny", random_weights=True, lora_rank=4, device="cpu", seed=2)
    trained = build_generator(spec)
    randomise_lora(trained.transformer, seed=3, std=0.05)
    spec = spec.replace(checkpoint=save_generator(trained, tmp_path / "lora.safetensors"))
    lr = _photo(32, 48)

    resolver = SuperResolver.from_spec(spec)  # the inference path: build_inference_generator
    assert base_transformer(resolver.model.transformer) is resolver.model.transformer  # no peft wrapper left
    assert not any("lora" in name for name, _ in resolver.model.transformer.named_parameters())
    merged = resolver.upscale_tensor(lr)
    unmerged_model = build_generator(spec)  # the training layout: adapters beside the base
    unmerged = SuperResolver(unmerged_model, tile=resolver.tile, overlap=resolver.overlap).upscale_tensor(lr)
    with unmerged_model.transformer.disable_adapter():
        no_lora = SuperResolver(unmerged_model, tile=resolver.tile, overlap=resolver.overlap).upscale_tensor(lr)
    diff = (merged - unmerged).abs().max().item()
    # fp32: only the summation order differs (x (W + BA) vs x W + (x A) B); measured 3.0e-7
    assert diff <= 1e-5, diff
    assert (no_lora - unmerged).abs().max().item() > 1e-3  # the adapter changes the output (0.073): a real check
    # --lora-mode unmerged: the adapters stay beside the base, as the official scripts run them: bit for bit
    kept = SuperResolver.from_spec(spec.replace(lora_mode="unmerged"))
    assert any("lora" in name for name, _ in kept.model.transformer.named_parameters())
    assert torch.equal(kept.upscale_tensor(lr), unmerged)


def test_quantising_needs_the_merged_lora_mode():
    with pytest.raises(SpecError, match="--quantize int8-weight needs --lora-mode merged"):
        ModelSpec(preset="tiny", quantize="int8-weight", lora_mode="unmerged")
    with pytest.raises(SpecError, match="--lora-mode 'folded': choose from merged, unmerged"):
        ModelSpec(preset="tiny", lora_mode="folded")


def test_every_inference_entry_point_builds_through_build_inference_generator(tmp_path, monkeypatch):
    """strsr-upscale and SuperResolver, strsr-bench and strsr-export all call the one builder."""
    import strsr.export.exporter as exporter
    import strsr.inference.pipeline as pipeline
    from strsr.bench import pipeline_bench
    from strsr.export.cli import parse as export_parse
    from strsr.inference.cli import main as upscale_main

    class Called(Exception):
        pass

    specs = []

    def spy(spec, **kwargs):
        specs.append(spec)
        raise Called

    monkeypatch.setattr(pipeline, "build_inference_generator", spy)
    monkeypatch.setattr(exporter, "build_inference_generator", spy)
    with pytest.raises(Called):
        SuperResolver.from_preset("tiny", device="cpu")
    with pytest.raises(Called):
        pipeline_bench.run(pipeline_bench.parse(["--preset", "tiny", "--device", "cpu", "--res", "64",
                                                 "--runtimes", "eager"]))  # fmt: skip
    with pytest.raises(Called):
        exporter.export(export_parse(["-o", str(tmp_path / "export"), "--preset", "tiny", "--device", "cpu"]))
    image = tmp_path / "in.png"
    from PIL import Image

    Image.fromarray(data.astronaut()[:16, :16]).save(image)
    with pytest.raises(Called):
        upscale_main([str(image), "-o", str(tmp_path / "out"), "--device", "cpu", "--quantize", "int8-weight"])
    assert [s.preset for s in specs] == ["tiny"] * 4
    assert specs[-1].quantize == "int8-weight"


def test_fp8_on_cpu_through_strsr_upscale_is_exit_2_with_one_line(tmp_path, caplog):
    from PIL import Image

    from strsr.inference.cli import main as upscale_main

    image = tmp_path / "in.png"
    Image.fromarray(data.astronaut()[:16, :16]).save(image)
    code = upscale_main([str(image), "-o", str(tmp_path / "out"), "--device", "cpu", "--quantize", "fp8"])
    assert code == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and errors[0].startswith("--quantize fp8 needs") and "\n" not in errors[0]
    assert not (tmp_path / "out" / "in.png").exists()


def test_strsr_export_refuses_pytorch_only_options(tmp_path):
    from strsr.export.cli import parse as export_parse
    from strsr.export.exporter import export

    for flag in (["--quantize", "int8-weight"], ["--compile"]):
        spec = export_parse(["-o", str(tmp_path / "export"), "--preset", "tiny", "--device", "cpu", *flag])
        with pytest.raises(SpecError, match="strsr-export: --quantize and --compile are for PyTorch inference"):
            export(spec)
    assert not (tmp_path / "export").exists()

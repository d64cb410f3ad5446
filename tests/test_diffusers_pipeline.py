"""StrSRPipeline: a real diffusers pipeline over strsr-upscale's per-image core, checked on tiny models on the CPU.

References: strsr-upscale's output file and `SuperResolver` (the code path the CLI runs), the pipeline before a
save -> load round trip, and accelerate's hook objects for the offload modes (no GPU here: the execution device is
the CPU, so the checks read the hooks and the order of the moves, not memory).
"""

import json
import shutil

import numpy as np
import pytest
import torch
from diffusers.hooks.group_offloading import _is_group_offload_enabled
from PIL import Image
from safetensors import safe_open

from strsr.inference.cli import OFFLOAD_MODES as CLI_OFFLOAD_MODES
from strsr.inference.cli import main as upscale_main
from strsr.inference.cli import sample_image
from strsr.inference.diffusers_pipeline import OFFLOAD_MODES, StrSRPipeline
from strsr.inference.pipeline import SuperResolver
from strsr.inference.upscale import OutputOptions, upscale_loaded
from strsr.io.images import image_from_pil, load_image
from strsr.model.build import build_generator
from strsr.model.checkpoint import save_generator
from strsr.spec import ModelSpec


def _small_photo():
    """A 40x28 crop of the bundled photo: one tile, a few VLM patches."""
    return Image.open(sample_image()).convert("RGB").crop((20, 10, 60, 38))


def _samples(pipe, image, **options):
    return pipe(image, output_type="np", **options).images[0]


def _resolver_samples(spec, image, outscale=4.0):
    """What strsr-upscale computes for `image` (a LoadedImage) into a PNG: upscale_loaded over SuperResolver."""
    return upscale_loaded(SuperResolver.from_spec(spec), image, OutputOptions(outscale=outscale), ".png").samples


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    _small_photo().save(path)
    return path


@pytest.fixture(scope="module")
def vlm_spec(tiny_vlm_dir):
    return ModelSpec(preset="tiny", conditioning="vlm", vlm=tiny_vlm_dir, device="cpu")


@pytest.fixture(scope="module")
def vlm_reference(vlm_spec):
    return _resolver_samples(vlm_spec, image_from_pil(_small_photo()))


def test_the_pipeline_writes_strsr_upscales_file_bit_for_bit(tmp_path, photo_file):
    pipe = StrSRPipeline.from_spec(ModelSpec(device="cpu"))
    for outscale in (4.0, 2.5):
        out = tmp_path / f"x{outscale:g}"
        assert upscale_main([str(photo_file), "-o", str(out), "--device", "cpu", "-s", str(outscale),
                             "--quiet"]) == 0  # fmt: skip
        written = np.asarray(Image.open(out / "photo.png"))
        got = _samples(pipe, photo_file, outscale=outscale)
        assert got.shape == written.shape == (int(28 * outscale), int(40 * outscale), 3) and got.dtype == np.uint8
        np.testing.assert_array_equal(got, written)
    pil = pipe(Image.open(photo_file)).images[0]  # PIL in, PIL out, as any diffusers image pipeline
    assert isinstance(pil, Image.Image) and pil.size == (160, 112)
    np.testing.assert_array_equal(np.asarray(pil), _samples(pipe, photo_file))


def test_save_pretrained_writes_the_hub_layout_and_from_pretrained_gives_the_same_outputs(tmp_path):
    pipe = StrSRPipeline.from_spec(ModelSpec(device="cpu"))
    want = _samples(pipe, sample_image())
    folder = tmp_path / "strsr-tiny"
    folder.mkdir()
    (folder / "stale.txt").write_text("from an earlier save")
    pipe.save_pretrained(folder)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "StrSRPipeline"
    assert index["transformer"] == ["diffusers", "Flux2Transformer2DModel"]
    assert index["vae"] == ["strsr.model.autoencoders", "PixelShuffleAutoencoder"]
    assert index["conditioning"] == ["strsr.inference.diffusers_components", "NullConditioningModel"]
    assert index["vlm"] == [None, None] and index["preset"] == "tiny" and index["latent"] == "sample"
    assert sorted(p.name for p in folder.iterdir()) == ["conditioning", "model_index.json", "transformer", "vae"]
    loaded = StrSRPipeline.from_pretrained(folder)
    np.testing.assert_array_equal(_samples(loaded, sample_image()), want)
    np.testing.assert_array_equal(_samples(loaded, sample_image(), seed=1), want)  # no posterior: seed-free
    with pytest.raises(FileNotFoundError, match="no model_index.json"):
        StrSRPipeline.from_pretrained(tmp_path / "nothing")


def test_vlm_pipeline_equals_the_resolver_and_survives_a_round_trip(tmp_path, vlm_spec, vlm_reference):
    pipe = StrSRPipeline.from_spec(vlm_spec)
    np.testing.assert_array_equal(_samples(pipe, _small_photo()), vlm_reference)
    pipe.save_pretrained(tmp_path / "p")
    index = json.loads((tmp_path / "p" / "model_index.json").read_text())
    assert index["vlm"] == ["transformers", "Qwen3VLModel"]
    assert index["processor"] == ["transformers", "Qwen3VLProcessor"]
    assert index["conditioning"] == ["strsr.inference.diffusers_components", "VLMConditioningModel"]
    loaded = StrSRPipeline.from_pretrained(tmp_path / "p")
    assert loaded.conditioning.adapter[0].weight.dtype == torch.float32
    np.testing.assert_array_equal(_samples(loaded, _small_photo()), vlm_reference)


def _record_moves(pipe, names, events):
    """Record every `.to(device)` accelerate makes on the named components, as (name, str(device))."""
    for name in names:
        module = getattr(pipe, name)
        original = module.to

        def to(*args, _name=name, _original=original, **kwargs):
            events.append((_name, str(args[0] if args else kwargs.get("device"))))
            return _original(*args, **kwargs)

        module.to = to


def test_model_offload_moves_the_vlm_back_before_the_dit_runs(vlm_spec, vlm_reference):
    pipe = StrSRPipeline.from_spec(vlm_spec)
    pipe.enable_model_cpu_offload(device="cpu")  # no GPU: the CPU is the execution device ("cpu:0")
    assert pipe._offload_device == torch.device("cpu:0") and pipe._execution_device == torch.device("cpu:0")
    assert pipe.model_cpu_offload_seq == "vlm->conditioning->transformer"  # the weightless VAE is hooked alone
    for name in ("vlm", "conditioning", "transformer", "vae"):
        assert type(getattr(pipe, name)._hf_hook).__name__ == "CpuOffload"
    events = []
    _record_moves(pipe, ("vlm", "transformer"), events)
    pipe.transformer.x_embedder.register_forward_pre_hook(lambda *_: events.append(("dit", "runs")))
    np.testing.assert_array_equal(_samples(pipe, _small_photo()), vlm_reference)
    dit = events.index(("dit", "runs"))
    vlm_moves = [e for e in events[:dit] if e[0] == "vlm"]
    assert vlm_moves == [("vlm", "cpu:0"), ("vlm", "cpu")], events  # onto the execution device, then back
    assert ("transformer", "cpu:0") in events[:dit]
    assert pipe._all_hooks and type(pipe.vlm._hf_hook).__name__ == "CpuOffload"  # re-armed for the next image


def _onload_to_plain_cpu(pipe):
    """accelerate 1.15 + torch 2.14 turn a Parameter moved to "cpu:0" (what diffusers passes for a CPU execution
    device) into a plain tensor and then fail to offload it; a GPU's "cuda:0" is not affected. Point the hooks at
    "cpu" so the same hooks can run here."""
    for component in pipe.components.values():
        for module in getattr(component, "modules", tuple)():
            hook = getattr(module, "_hf_hook", None)
            if getattr(hook, "execution_device", None) is not None:
                hook.execution_device = torch.device("cpu")


def test_sequential_offload_keeps_weights_on_the_meta_device_and_gives_the_same_outputs(vlm_spec, vlm_reference):
    pipe = StrSRPipeline.from_spec(vlm_spec)
    pipe.enable_sequential_cpu_offload(device="cpu")
    _onload_to_plain_cpu(pipe)
    for name in ("transformer", "vlm"):
        component = getattr(pipe, name)
        assert {p.device.type for p in component.parameters()} == {"meta"}
        hooks = [type(m._hf_hook).__name__ for m in component.modules() if hasattr(m, "_hf_hook")]
        assert "AlignDevicesHook" in hooks
    assert pipe.conditioning.adapter[0].weight.device.type == "cpu"  # excluded: it places the VLM features
    np.testing.assert_array_equal(_samples(pipe, _small_photo()), vlm_reference)
    assert {p.device.type for p in pipe.transformer.parameters()} == {"meta"}


def test_group_offload_gives_the_same_outputs(vlm_spec, vlm_reference):
    pipe = StrSRPipeline.from_spec(vlm_spec)
    pipe.enable_group_offload(onload_device=torch.device("cpu"), offload_type="leaf_level")
    assert _is_group_offload_enabled(pipe.transformer) and _is_group_offload_enabled(pipe.vlm)
    np.testing.assert_array_equal(_samples(pipe, _small_photo()), vlm_reference)


def test_lora_is_saved_in_the_diffusers_format_and_load_lora_weights_reads_it(tmp_path, randomise_lora, photo_file):
    model = build_generator(ModelSpec(preset="tiny", random_weights=True, lora_rank=4, device="cpu"))
    randomise_lora(model.transformer, seed=3)
    checkpoint = save_generator(model, tmp_path / "lora.safetensors")
    spec = ModelSpec(preset="tiny", random_weights=True, checkpoint=checkpoint, device="cpu")
    image = load_image(photo_file)
    pipe = StrSRPipeline.from_spec(spec.replace(lora_mode="unmerged"))
    assert pipe.get_list_adapters() == {"transformer": ["strsr"]}
    want = _samples(pipe, image)

    folder = tmp_path / "pipe"
    pipe.save_pretrained(folder)
    with safe_open(folder / "pytorch_lora_weights.safetensors", "pt") as f:
        keys = list(f.keys())
        config = json.loads(f.metadata()["lora_adapter_metadata"])
    assert keys and all(k.startswith("transformer.") and ".lora_" in k for k in keys)
    assert config["transformer.r"] == 4 and config["transformer.lora_alpha"] == 4
    with safe_open(folder / "transformer" / "diffusion_pytorch_model.safetensors", "pt") as f:
        assert not any("lora" in k or "base_layer" in k for k in f.keys())  # the base weights, unchanged
    np.testing.assert_array_equal(_samples(pipe, image), want)  # the adapter is back after saving

    loaded = StrSRPipeline.from_pretrained(folder)
    np.testing.assert_array_equal(_samples(loaded, image), want)

    base = tmp_path / "base"
    shutil.copytree(folder, base)
    (base / "pytorch_lora_weights.safetensors").unlink()
    plain = StrSRPipeline.from_pretrained(base)
    assert not np.array_equal(_samples(plain, image), want)  # the LoRA matters
    plain.load_lora_weights(folder, adapter_name="strsr")
    np.testing.assert_array_equal(_samples(plain, image), want)

    # fused, the LoRA is merged as strsr-upscale merges it
    loaded.fuse_lora()
    assert upscale_main([str(photo_file), "-o", str(tmp_path / "cli"), "--random-weights", "--checkpoint",
                         str(checkpoint), "--device", "cpu", "--quiet"]) == 0  # fmt: skip
    np.testing.assert_array_equal(_samples(loaded, image), np.asarray(Image.open(tmp_path / "cli" / "photo.png")))
    with pytest.raises(ValueError, match="fused"):
        loaded.save_pretrained(tmp_path / "fused")


def test_strsr_upscale_offload_flag(tmp_path, capsys, caplog):
    assert CLI_OFFLOAD_MODES == OFFLOAD_MODES
    out = str(tmp_path / "out")
    assert upscale_main([str(sample_image()), "-o", out, "--device", "cpu", "--offload", "model"]) == 2
    assert "--offload model keeps the weights in CPU memory and runs them on a GPU" in caplog.text
    with pytest.raises(SystemExit):
        upscale_main([str(sample_image()), "-o", out, "--offload", "sequential", "--runtime", "onnx"])
    assert "--offload sequential is for --runtime torch" in capsys.readouterr().err
    with pytest.raises(ValueError, match="--offload 'disk'"):
        StrSRPipeline.from_spec(ModelSpec(device="cpu"), offload="disk")

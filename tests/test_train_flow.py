"""The README's flow on tiny models, for each conditioning mode: strsr-train -> strsr-train export-weights ->
strsr-upscale --checkpoint; checkpoints record the conditioning mode, and a checkpoint loaded into a model of another
mode is an error that names the flag to pass."""

import textwrap

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from skimage import data

from strsr.inference.cli import main as upscale_main
from strsr.inference.pipeline import SuperResolver
from strsr.model.build import build_generator
from strsr.model.checkpoint import CheckpointError, read_metadata, save_generator
from strsr.spec import ModelSpec
from strsr.train.cli import main as train_main

MODES = ("none", "text", "vlm")


@pytest.fixture(scope="module")
def mode_settings(tiny_vlm_dir, tiny_text_encoder_dir):
    """Per mode: the recipe's [model] lines, the strsr-upscale flags and the SuperResolver arguments of that model."""
    text = {"text_encoder": tiny_text_encoder_dir, "prompt": "a sharp photo"}
    return {
        "none": ("", ["--conditioning", "none"], {}),
        "text": (f'text_encoder = "{tiny_text_encoder_dir}"\nprompt = "a sharp photo"',
                 ["--conditioning", "text", "--text-encoder", str(tiny_text_encoder_dir), "--prompt", "a sharp photo"],
                 text),
        "vlm": (f'vlm = "{tiny_vlm_dir}"', ["--conditioning", "vlm", "--vlm", str(tiny_vlm_dir)],
                {"vlm": tiny_vlm_dir}),
    }  # fmt: skip


def _recipe(path, mode: str, model_lines: str, run_dir) -> str:
    path.write_text(textwrap.dedent("""
        [model]
        preset = "tiny"
        conditioning = "{mode}"
        lora_rank = 4
        device = "cpu"
        {model_lines}
        [data]
        skimage_images = ["astronaut"]
        resolution = 64
        [degradation]
        kind = "bicubic"
        [loss]
        lambda_lpips = 0.0
        lambda_gan = 0.0
        [optim]
        lr_g = 1e-3
        [run]
        output_dir = "{run_dir}"
        max_steps = 1
        checkpoint_every = 1
        gradient_checkpointing = false
    """).format(mode=mode, model_lines=model_lines.replace("\n", "\n        "), run_dir=run_dir))
    return str(path)


@pytest.mark.parametrize("mode", MODES)
def test_train_export_upscale_in_each_mode(mode, mode_settings, tmp_path):
    model_lines, upscale_flags, resolver_kwargs = mode_settings[mode]
    recipe = _recipe(tmp_path / "r.toml", mode, model_lines, tmp_path / "run")
    assert train_main([recipe]) == 0
    weights = tmp_path / "strsr-tiny.safetensors"
    assert train_main(["export-weights", str(tmp_path / "run"), "-o", str(weights)]) == 0
    assert read_metadata(weights)["conditioning"] == mode

    photo = tmp_path / "in" / "c.png"
    photo.parent.mkdir()
    Image.fromarray(data.coffee()[100:124, 200:224]).save(photo)
    out = tmp_path / "out"
    assert upscale_main([str(photo), "-o", str(out), "--checkpoint", str(weights), "--quiet", *upscale_flags]) == 0
    assert Image.open(out / "c.png").size == (96, 96)
    # the upscaler runs the trained tensors (the adapter too, in vlm mode)
    # (unmerged: the parameters keep their trained names; the merged default folds the LoRA into the base)
    resolver = SuperResolver.from_preset("tiny", conditioning=mode, checkpoint=weights, device="cpu",
                                         lora_mode="unmerged", **resolver_kwargs)  # fmt: skip
    trained = load_file(weights)
    state = dict(resolver.model.named_parameters())
    assert set(trained) <= set(state) and all(torch.equal(state[k], trained[k]) for k in trained)
    assert any(k.startswith("conditioning.adapter.") for k in trained) == (mode == "vlm")


def test_a_checkpoint_of_another_mode_names_the_flag(tmp_path, tiny_vlm_dir, caplog):
    model = build_generator(ModelSpec(preset="tiny", lora_rank=4, random_weights=True))
    weights = save_generator(model, tmp_path / "none.safetensors")
    with pytest.raises(CheckpointError, match=r"trained with conditioning 'none', this model is built for 'vlm'; "
                                              r"pass --conditioning none .* --set model.conditioning=none"):
        build_generator(ModelSpec(preset="tiny", conditioning="vlm", vlm=tiny_vlm_dir, checkpoint=weights))
    photo = tmp_path / "c.png"
    Image.fromarray(data.coffee()[100:116, 200:216]).save(photo)
    code = upscale_main([str(photo), "-o", str(tmp_path / "out"), "--checkpoint", str(weights), "--conditioning", "vlm",
                         "--vlm", str(tiny_vlm_dir), "--quiet"])  # fmt: skip
    assert code == 2 and "pass --conditioning none" in caplog.text


def test_files_naming_the_conditioning_class_read_as_their_mode(tmp_path):
    """Checkpoints written before the mode was recorded (the bundled tiny weights among them) still load."""
    model = build_generator(ModelSpec(preset="tiny", lora_rank=4, random_weights=True))
    tensors = {k: v.contiguous() for k, v in model.trainable_state_dict().items()}
    for name, mode in (("NullConditioning", "none"), ("PromptConditioning", "text"), ("VLMConditioning", "vlm")):
        meta = {"format": "strsr.generator.v1", "preset": "tiny", "lora_rank": "4", "conditioning": name}
        save_file(tensors, tmp_path / f"{name}.safetensors", metadata=meta)
        assert read_metadata(tmp_path / f"{name}.safetensors")["conditioning"] == mode
    build_generator(ModelSpec(preset="tiny", lora_rank=4, checkpoint=tmp_path / "NullConditioning.safetensors"))
    assert SuperResolver.from_preset("tiny").model is not None  # the bundled weights (written with a class name)

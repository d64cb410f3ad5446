"""The tiny recipes that train strsr-tiny: pinned package photos, the from-scratch discriminator, FDL on part of a
batch, metrics.jsonl, and a run without a GAN that never imports open_clip, timm or TensorBoard."""

import hashlib
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image

from strsr.bench.tiny_eval import HELD_OUT, held_out_photo
from strsr.losses.discriminator import BinomialBlur, ScratchDiscriminator, build_discriminator
from strsr.losses.gan import ragan_d_loss
from strsr.train.config import ConfigError, TrainingImage, from_dict, load_config, loss_weights
from strsr.train.data import CropSampler, DatasetError, _load, pinned_image_paths


def _sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# ----------------------------------------------------------------------------- recipes


def test_tiny_recipes_train_realesrgan_with_the_scratch_discriminator_then_fdl():
    stage1, stage2 = load_config("tiny"), load_config("tiny-stage2")
    for c in (stage1, stage2):
        assert (c.model.preset, c.model.mode, c.model.lora_rank, c.data.crop) == ("tiny", "none", 0, "patch")
        assert (c.degradation.kind, c.degradation.sharpen_gt, c.discriminator.model) == ("mixed", False, "scratch")
        assert c.model.checkpoint.name == "strsr-tiny-bicubic.safetensors" and not c.run.zero_init_velocity
        assert c.data.images == stage1.data.images and len(c.data.images) == 36
    assert (loss_weights(stage1).lambda_gan, loss_weights(stage1).lambda_fdl) == (0.0, 0.0)  # L1 only
    assert (loss_weights(stage2).lambda_gan, loss_weights(stage2).lambda_fdl) == (0.01, 0.002)
    assert stage2.run.resume_from == stage1.run.output_dir and stage2.run.max_steps > stage1.run.max_steps
    assert load_config("tiny-bicubic").degradation.kind == "bicubic"


def test_no_held_out_photo_is_a_training_photo():
    """By file (sha256) and by pixels: scikit-image's `cat` is chelsea, so names alone would not do."""
    images = load_config("tiny").data.images
    held_out = {tuple(held_out_photo(name).shape[-2:]): held_out_photo(name) for name in HELD_OUT}
    import skimage

    from strsr.train.data import image_path

    skimage_dir = image_path(TrainingImage("skimage/data", "0" * 64, "scikit-image"))
    held_out_files = {_sha(skimage_dir / f) for f in ("chelsea.png", "coffee.png")}
    assert skimage.data.cat().shape == skimage.data.chelsea().shape  # the same photo under two names
    for image in images:
        assert image.sha256 not in held_out_files
        if image.source == "pip":  # Debian files need not be installed here; they are not the pip photos anyway
            pixels = _load(str(image_path(image))).float() / 255
            for photo in held_out.values():
                if pixels.shape[-2:] == photo.shape[-2:]:
                    assert not torch.equal(pixels, photo[0])


def test_pinned_pip_images_resolve_and_are_checked():
    pinned = [i for i in load_config("tiny").data.images if i.source == "pip"]
    paths = pinned_image_paths(pinned)
    assert [_sha(p) for p in paths] == [i.sha256 for i in pinned]
    wrong = TrainingImage(pinned[0].path, "0" * 64, "scikit-image")
    with pytest.raises(DatasetError, match=r"astronaut.png: sha256 [0-9a-f]{64} is not the recipe's 0{64}"):
        pinned_image_paths([wrong])


def test_missing_debian_images_name_the_packages_to_install(tmp_path):
    missing = [TrainingImage(str(tmp_path / "a.jpg"), "0" * 64, "mate-backgrounds", "debian"),
               TrainingImage(str(tmp_path / "b.jpg"), "0" * 64, "lomiri-wallpapers-20.04", "debian")]  # fmt: skip
    with pytest.raises(DatasetError, match=r"2 training images are missing .*apt-get install "
                                           r"lomiri-wallpapers-20.04 mate-backgrounds"):  # fmt: skip
        pinned_image_paths(missing)
    with pytest.raises(DatasetError, match="pip package no-such-dist is not installed"):
        pinned_image_paths([TrainingImage("x.png", "0" * 64, "no-such-dist")])


def test_images_tables_are_checked(tmp_path):
    base = {"skimage_images": ["astronaut"]}
    with pytest.raises(ConfigError, match=r"data.images\[0\]: unknown key 'sha'"):
        from_dict({"data": {**base, "images": [{"path": "a", "sha": "b", "package": "p"}]}})
    with pytest.raises(ConfigError, match=r"data.images\[0\]: missing key 'sha256'"):
        from_dict({"data": {**base, "images": [{"path": "a", "package": "p"}]}})
    recipe = tmp_path / "r.toml"
    recipe.write_text('[data]\n[[data.images]]\npath = "a"\nsha256 = "xyz"\npackage = "p"\n')
    with pytest.raises(ConfigError, match=r"data.images\[0\].sha256 must be 64 lowercase hex digits"):
        load_config(str(recipe))


def test_max_short_side_resizes_large_photos_the_official_way():
    from PIL import Image

    from strsr.train.config import DataConfig
    from strsr.train.data import resize_short_side

    sampler = CropSampler(DataConfig(skimage_images=["hubble_deep_field"], resolution=64, max_short_side=218), 0)
    image = sampler._image("skimage:hubble_deep_field")  # 1000x872 -> box halving to 500x436, bicubic to 250x218
    original = _load("skimage:hubble_deep_field")
    expected = resize_short_side(Image.fromarray(original.permute(1, 2, 0).numpy()), 218)
    assert image.shape == (3, 218, 250)
    assert torch.equal(image, torch.from_numpy(np.array(expected)).permute(2, 0, 1))


def test_mixed_degradation_is_realesrgan_bicubic_and_jpeg_by_quarter():
    from strsr.degradation.config import DegradationConfig
    from strsr.degradation.jpeg import jpeg_compress
    from strsr.degradation.realesrgan import RealESRGANDegradation
    from strsr.train.components import MixedDegradation

    config = DegradationConfig(kind="mixed", sharpen_gt=False)
    hr = held_out_photo("coffee")[:, :, :128, :256].reshape(1, 3, 128, 2, 128).permute(0, 3, 1, 2, 4)
    hr = torch.cat([hr[0], hr[0].flip(-1), hr[0].flip(-2), hr[0].flip(-1, -2)])  # (8, 3, 128, 128) photo crops
    pair = MixedDegradation(RealESRGANDegradation(config), (30.0, 95.0))(hr, torch.Generator().manual_seed(3))

    g = torch.Generator().manual_seed(3)
    heavy = RealESRGANDegradation(config)(hr[:4], g).lr_raw
    quality = 30 + 65 * torch.rand(2, generator=g)
    pil = [np.asarray(Image.fromarray(x.permute(1, 2, 0).numpy()).resize((32, 32), Image.BICUBIC))
           for x in (hr[4:] * 255).round().to(torch.uint8)]  # fmt: skip
    bicubic = torch.from_numpy(np.stack(pil)).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(pair.hr, hr) and pair.lr_raw.shape == (8, 3, 32, 32)
    assert torch.equal(pair.lr_raw[:4], heavy)
    assert torch.equal(pair.lr_raw[4:], (pair.lr_raw[4:] * 255).round() / 255)  # 8-bit values, as a saved file
    assert (pair.lr_raw[4:6] - bicubic[:2]).abs().mean() < 1.5 / 255  # Pillow's antialiased bicubic, ~1 level
    expected_jpeg = jpeg_compress(bicubic[2:], quality)  # the qualities drawn after the RealESRGAN half
    assert (pair.lr_raw[6:] - expected_jpeg).abs().mean() < 1.5 / 255
    assert (pair.lr_raw[6:] - bicubic[2:]).abs().mean() > 2 / 255  # JPEG q30-95 changed them


# ----------------------------------------------------------------------------- scratch discriminator


def test_scratch_discriminator_heads_trunk_and_gradients():
    d = build_discriminator("scratch", seed=0)
    assert isinstance(d, ScratchDiscriminator)
    logits = d(torch.zeros(2, 3, 128, 128))
    # features at strides 4, 8, 16 (32, 16, 8 px), each head halves twice: 8, 4, 2; then the embedding logit
    assert [tuple(x.shape) for x in logits] == [(2, 1, 8, 8), (2, 1, 4, 4), (2, 1, 2, 2), (2, 1)]
    assert [type(m) for m in d.patch_heads[0].layers][0] is BinomialBlur  # the official heads
    assert {id(p) for p in d.head_parameters()} == {id(p) for p in d.parameters()}  # the trunk trains too
    real, fake = torch.rand(2, 3, 64, 64) * 2 - 1, torch.rand(2, 3, 64, 64) * 2 - 1
    ragan_d_loss(d(real), d(fake)).backward()
    trunk = [p for n, p in d.named_parameters() if n.startswith("trunk.") and n.endswith("weight_orig")]
    assert trunk and all(p.grad is not None and p.grad.abs().sum() > 0 for p in trunk)
    with pytest.raises(ValueError, match="takes no weights file"):
        build_discriminator("scratch", "w.bin")


# ----------------------------------------------------------------------------- training runs


def _tiny_config(tmp_path, **sections):
    base = {
        "model": {"preset": "tiny", "lora_rank": 4, "device": "cpu"},
        "data": {"skimage_images": ["astronaut"], "resolution": 128, "crop": "patch"},
        "degradation": {"kind": "bicubic"},
        "loss": {"lambda_lpips": 0.0, "lambda_gan": 0.01, "lambda_fdl": 0.002, "fdl_num_proj": 4, "fdl_batch": 1},
        "discriminator": {"model": "scratch"},
        "optim": {"batch_size": 2},
        "run": {"output_dir": str(tmp_path / "run"), "max_steps": 2, "checkpoint_every": 1, "log_every": 1,
                "sample_every": 0, "grid_every": 1, "gradient_checkpointing": False, "tensorboard": False},
    }  # fmt: skip
    for section, values in sections.items():
        base[section] = {**base.get(section, {}), **values}
    return from_dict(base)


def test_fdl_on_the_first_images_and_metrics_jsonl(tmp_path):
    from strsr.losses.fdl import FrequencyDistributionLoss
    from strsr.train.trainer import Trainer

    config = _tiny_config(tmp_path)
    trainer = Trainer(config)
    try:
        inputs = trainer._inputs(0)
        prediction, target = torch.rand_like(inputs.target) * 2 - 1, inputs.target
        reference = FrequencyDistributionLoss(num_proj=4, seed=0, input_range="raw")
        expected = reference(prediction[:1], target[:1])
        assert float(trainer.c.fdl(prediction, target)) == pytest.approx(float(expected), rel=1e-6)
        assert float(reference(prediction, target)) != pytest.approx(float(expected), rel=1e-3)
        assert trainer.c.fdl.state_dict().keys() == reference.state_dict().keys()
        trainer.train()
    finally:
        trainer.close()
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [line for line in lines if "g/total" in line]
    assert [line["step"] for line in losses] == [1, 2] and all("g/fdl" in line and "d/r1" in line for line in losses)
    assert [line["step"] for line in lines if "monitor/grid" in line] == [1, 2]
    assert not (tmp_path / "run" / "tensorboard").exists()


def test_a_run_without_gan_imports_no_open_clip_timm_or_tensorboard(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from strsr.train.cli import main
        assert main([{str(tmp_path / 'r.toml')!r}]) == 0
        try:
            main(["--help"])
        except SystemExit:
            pass
        print([m for m in ("open_clip", "timm", "tensorboard", "torch.utils.tensorboard") if m in sys.modules])
    """)  # fmt: skip
    (tmp_path / "r.toml").write_text(textwrap.dedent(f"""
        [model]
        preset = "tiny"
        lora_rank = 4
        device = "cpu"
        [data]
        skimage_images = ["astronaut"]
        resolution = 64
        crop = "patch"
        [degradation]
        kind = "bicubic"
        [loss]
        lambda_lpips = 0.0
        lambda_gan = 0.0
        [optim]
        batch_size = 1
        [run]
        output_dir = "{tmp_path / 'run'}"
        max_steps = 1
        log_every = 1
        grid_every = 1
        gradient_checkpointing = false
        tensorboard = false
    """))  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "run" / "metrics.jsonl").is_file()


def test_tensorboard_still_logs_when_asked(tmp_path):
    """The default (run.tensorboard = true) keeps TensorBoard, imported at the first log."""
    from strsr.train.trainer import Trainer

    config = _tiny_config(tmp_path, loss={"lambda_gan": 0.0, "lambda_fdl": 0.0}, run={"tensorboard": True,
                                                                                      "max_steps": 1})  # fmt: skip
    trainer = Trainer(config)
    try:
        trainer.train()
    finally:
        trainer.close()
    assert list((tmp_path / "run" / "tensorboard").iterdir())



def test_stage2_with_a_gan_resumes_a_stage1_run_without_one(tmp_path):
    """tiny-stage2 resumes tiny's full state (generator, its optimiser, step) although stage 1 trained no
    discriminator: D starts fresh and trains, and the generator continues from stage 1's weights."""
    from safetensors.torch import load_file

    from strsr.train.trainer import Trainer

    stage1 = _tiny_config(tmp_path, loss={"lambda_gan": 0.0, "lambda_fdl": 0.0}, run={"max_steps": 1})
    trainer = Trainer(stage1)
    try:
        trainer.train()
    finally:
        trainer.close()
    saved = load_file(str(tmp_path / "run" / "checkpoints" / "step-00000001" / "generator.safetensors"))
    stage2 = _tiny_config(tmp_path, run={"output_dir": str(tmp_path / "stage2"), "resume_from": str(tmp_path / "run"),
                                         "max_steps": 2})  # fmt: skip
    trainer = Trainer(stage2)
    try:
        assert trainer.step == 1 and trainer.c.discriminator is not None
        state = trainer.c.generator.state_dict()
        assert saved and all(torch.equal(state[k], v) for k, v in saved.items())
        trainer.train()
        assert any(not torch.equal(trainer.c.generator.state_dict()[k], v) for k, v in saved.items())
    finally:
        trainer.close()
    lines = [json.loads(line) for line in (tmp_path / "stage2" / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines if "d/ragan_d" in line] == [2]


def test_cooldown_factor_is_a_half_cosine_over_the_last_steps():
    from strsr.train.trainer import cooldown_factor

    assert [cooldown_factor(s, 10, 0) for s in range(10)] == [1.0] * 10
    # 4 cooldown steps of 10: steps 6..9 run at (1 + cos(pi * k / 4)) / 2 for k = 0..3
    expected = [1.0] * 6 + [1.0, (1 + 2**-0.5) / 2, 0.5, (1 - 2**-0.5) / 2]
    assert [cooldown_factor(s, 10, 4) for s in range(10)] == pytest.approx(expected, abs=1e-12)


def test_the_cooldown_scales_the_recipe_rates_also_after_a_resume(tmp_path):
    """Logged lr/g after each step: the cooldown's half cosine; a resumed run trains at its own recipe's rate, not
    at the rate saved in the checkpoint's optimizer state."""
    from strsr.train.trainer import Trainer

    no_gan = {"lambda_gan": 0.0, "lambda_fdl": 0.0}
    first = _tiny_config(tmp_path, loss=no_gan, optim={"lr_g": 1e-3, "lr_cooldown_steps": 2}, run={"max_steps": 4})
    trainer = Trainer(first)
    try:
        trainer.train()
    finally:
        trainer.close()
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [line["lr/g"] for line in lines if "lr/g" in line] == pytest.approx([1e-3, 1e-3, 1e-3, 5e-4], rel=1e-9)

    resumed = _tiny_config(tmp_path, loss=no_gan, optim={"lr_g": 2e-4},
                           run={"output_dir": str(tmp_path / "next"), "resume_from": str(tmp_path / "run"),
                                "max_steps": 5})  # fmt: skip
    trainer = Trainer(resumed)
    try:
        trainer.train()
        assert trainer.c.opt_g.param_groups[0]["lr"] == 2e-4
    finally:
        trainer.close()

"""strsr-train on the tiny preset: config, steps, resume bit-for-bit, interrupts, divergence, bad data, DDP."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from skimage import data

from strsr.losses.objectives import LossWeights
from strsr.model.checkpoint import CheckpointError
from strsr.presets import get_preset
from strsr.train import trainer as trainer_module
from strsr.train.cli import export_weights, main
from strsr.train.config import ConfigError, apply_override, from_dict, load_config, loss_weights
from strsr.train.data import CropSampler, DatasetError, official_crop, resize_short_side
from strsr.train.trainer import Trainer, TrainingDiverged


def _config(tmp_path, **sections):
    """A seconds-long tiny run: LoRA DiT, tiny discriminator, RealESRGAN degradation with a pair queue."""
    base = {
        "model": {"preset": "tiny", "lora_rank": 4, "device": "cpu"},
        "data": {"skimage_images": ["astronaut", "coffee"], "resolution": 64, "crop": "center", "flip": True},
        "degradation": {"kind": "realesrgan", "queue_size": 4},
        "loss": {"lambda_lpips": 0.0, "lambda_gan": 0.1},
        "discriminator": {"model": "tiny"},
        "optim": {"batch_size": 1, "lr_g": 1e-3, "lr_d": 1e-3},
        "run": {"output_dir": str(tmp_path / "run"), "max_steps": 4, "checkpoint_every": 2, "log_every": 1,
                "sample_every": 2, "keep_last": 5, "gradient_checkpointing": False},
    }  # fmt: skip
    for section, values in sections.items():
        base[section] = {**base.get(section, {}), **values}
    return from_dict(base)


def _train(config, resume=False):
    trainer = Trainer(config, resume=resume)
    try:
        trainer.train()
    finally:
        trainer.close()
    return trainer


def _final_state(run_dir):
    last = sorted((run_dir / "checkpoints").iterdir())[-1]
    training = torch.load(last / "training.pt", weights_only=False)
    return last.name, load_file(last / "generator.safetensors"), training


def _assert_same_state(a, b):
    assert a[0] == b[0]
    assert a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])
    heads_a, heads_b = a[2]["discriminator_heads"], b[2]["discriminator_heads"]
    assert heads_a.keys() == heads_b.keys() and all(torch.equal(heads_a[k], heads_b[k]) for k in heads_a)
    for opt in ("opt_g", "opt_d"):
        for sa, sb in zip(a[2][opt]["state"].values(), b[2][opt]["state"].values()):
            assert all(torch.equal(sa[k], sb[k]) for k in sa)


# ----------------------------------------------------------------------------- config


# The official runs: configs/{flux,zimage}_train_stage{1,2}.yaml of github.com/jkwang28/StrSR (and paper §4.1).
OFFICIAL = dict(
    conditioning="vlm",  # use_qwen: true, frozen Qwen3-VL, projector trained in G's optimizer at lr_G
    latent="sample",  # vae.encode(lq).latent_dist.sample()
    lora_rank=256,
    resolution=1024, crop="center", flip=False,  # out_size 1024, crop_type center, use_hflip/use_rot false
    degradation="realesrgan", queue_size=256, sharpen_gt=True,  # RealESRGANBatchTransform, use_sharpener
    lambda_l1=1.0, lambda_lpips=3.0, lambda_gan=0.1, lambda_r1=10.0, r1_sigma=0.005, r1_noise="uniform",
    fdl_input_range="raw",  # fdl_loss(x, gt) on the [-1, 1] images
    lr_g=5e-6, lr_d=1e-6, lr_adapter=None, betas=(0.9, 0.999), weight_decay=0.01,  # AdamW, only betas given
    grad_clip=1.0, batch_size=1,  # max_grad_norm 1.0; batch_size 1 per GPU (x 4 GPUs)
    checkpoint_every=1000, discriminator="convnext_xxlarge",
)  # fmt: skip
STAGES = {1: dict(lambda_fdl=0.0, max_steps=40_000, resume=None), 2: dict(lambda_fdl=0.002, max_steps=60_000,
                                                                           resume="stage1")}  # fmt: skip


@pytest.mark.parametrize("name", ["flux2-klein-4b-stage1", "flux2-klein-4b-stage2", "zimage-turbo-stage1",
                                  "zimage-turbo-stage2"])  # fmt: skip
def test_paper_recipes_train_what_the_official_configs_train(name):
    with pytest.raises(ConfigError, match="no training data"):
        load_config(name, ["model.vlm=/models/qwen3-vl"])
    with pytest.raises(ConfigError, match=r"model.vlm: VLM conditioning needs the local Qwen3-VL folder"):
        load_config(name, ['data.folders=["/data/a"]'])
    c = load_config(name, ['data.folders=["/data/a"]', "model.vlm=/models/qwen3-vl"])
    stage = int(name[-1])
    preset = name.rsplit("-stage", 1)[0]
    got = dict(
        conditioning=c.model.conditioning, latent=c.model.latent,
        lora_rank=c.model.lora_rank if c.model.lora_rank is not None else get_preset(preset).lora_rank,
        resolution=c.data.resolution, crop=c.data.crop, flip=c.data.flip,
        degradation=c.degradation.kind, queue_size=c.degradation.queue_size, sharpen_gt=c.degradation.sharpen_gt,
        lambda_l1=c.loss.lambda_l1, lambda_lpips=c.loss.lambda_lpips, lambda_gan=c.loss.lambda_gan,
        lambda_r1=c.loss.lambda_r1, r1_sigma=c.loss.r1_sigma, r1_noise=c.loss.r1_noise,
        fdl_input_range=c.loss.fdl_input_range,
        lr_g=c.optim.lr_g, lr_d=c.optim.lr_d, lr_adapter=c.optim.lr_adapter, betas=tuple(c.optim.betas),
        weight_decay=c.optim.weight_decay, grad_clip=c.optim.grad_clip, batch_size=c.optim.batch_size,
        checkpoint_every=c.run.checkpoint_every, discriminator=c.discriminator.model,
    )  # fmt: skip
    assert got == OFFICIAL
    assert c.model.preset == preset and c.run.stage == stage and c.run.max_steps == STAGES[stage]["max_steps"]
    assert loss_weights(c) == LossWeights(1.0, 3.0, 0.1, STAGES[stage]["lambda_fdl"], 10.0)
    assert c.run.resume_from == (None if stage == 1 else f"runs/{preset}-stage1")


def test_tiny_recipe_stays_unconditioned_on_full_resolution_patches():
    tiny = load_config("tiny-bicubic")  # the old default's recipe; tiny itself: tests/test_train_tiny.py
    assert (tiny.model.preset, tiny.model.mode, tiny.data.crop, tiny.degradation.kind) == (
        "tiny", "none", "patch", "bicubic")  # fmt: skip
    assert loss_weights(tiny) == LossWeights(1.0, 0.0, 0.0, 0.0, 10.0)


def test_overrides_are_typed_and_unknown_keys_fail(tmp_path):
    config = _config(tmp_path)
    apply_override(config, "optim.lr_g=2e-4")
    apply_override(config, "run.output_dir=runs/x")
    apply_override(config, 'data.folders=["a", "b"]')
    apply_override(config, "data.flip=false")
    assert (config.optim.lr_g, config.run.output_dir, config.data.folders, config.data.flip) == (
        2e-4, "runs/x", ["a", "b"], False,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="unknown key optim.lr_gen"):
        apply_override(config, "optim.lr_gen=1")
    with pytest.raises(ConfigError, match="unknown config section"):
        apply_override(config, "optimiser.lr_g=1")
    with pytest.raises(ConfigError, match="run.max_steps: expected int"):
        apply_override(config, "run.max_steps=many")
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_override(config, "max_steps=3")


def test_stage_switch_changes_lambda_fdl(tmp_path):
    config = _config(tmp_path)
    assert loss_weights(config).lambda_fdl == 0.0
    apply_override(config, "run.stage=2")
    assert loss_weights(config).lambda_fdl == 0.002
    apply_override(config, "loss.lambda_fdl=0.01")
    assert loss_weights(config).lambda_fdl == 0.01


# ----------------------------------------------------------------------------- steps


def _snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _changed(before, module):
    return {n for n, p in module.named_parameters() if not torch.equal(before[n], p.detach())}


def test_g_step_touches_only_generator_weights_and_d_step_only_heads(tmp_path):
    trainer = Trainer(_config(tmp_path))
    g, d = trainer.c.generator, trainer.c.discriminator
    g_before, d_before = _snapshot(g), _snapshot(d)
    trainer._g_step(0)
    trainable_g = {n for n, p in g.named_parameters() if p.requires_grad}
    assert _changed(g_before, g) == trainable_g and trainable_g
    assert not _changed(d_before, d)
    g_before, d_before = _snapshot(g), _snapshot(d)
    trainer._d_step(1)
    heads = {n for n, p in d.named_parameters() if not n.startswith("visual.")}
    assert not _changed(g_before, g)
    changed = _changed(d_before, d)
    assert changed and changed <= heads
    trainer.close()


# ----------------------------------------------------------------------------- resume


def test_two_steps_resume_two_steps_equals_four_straight(tmp_path):
    straight = _config(tmp_path / "a")
    _train(straight)
    first = _config(tmp_path / "b", run={"max_steps": 2})
    _train(first)
    resumed = _config(tmp_path / "b")
    trainer = _train(resumed, resume=True)
    assert trainer.step == 4
    _assert_same_state(_final_state(tmp_path / "a" / "run"), _final_state(tmp_path / "b" / "run"))


def test_killed_run_resumes_from_the_last_checkpoint(tmp_path, monkeypatch):
    reference = _config(tmp_path / "a")
    _train(reference)
    config = _config(tmp_path / "b")
    original = Trainer.train_step

    def dies_in_step_three(self):
        if self.step == 2:
            raise SystemExit("killed")  # no chance to save: like SIGKILL
        return original(self)

    monkeypatch.setattr(Trainer, "train_step", dies_in_step_three)
    with pytest.raises(SystemExit):
        _train(config)
    monkeypatch.undo()
    assert [p.name for p in (tmp_path / "b" / "run" / "checkpoints").iterdir()] == ["step-00000002"]
    _train(_config(tmp_path / "b"), resume=True)
    _assert_same_state(_final_state(tmp_path / "a" / "run"), _final_state(tmp_path / "b" / "run"))


def test_interrupt_saves_a_checkpoint_and_stops(tmp_path, monkeypatch):
    config = _config(tmp_path, run={"max_steps": 10, "checkpoint_every": 100})
    original = Trainer.train_step

    def interrupted_in_step_two(self):
        out = original(self)
        if self.step == 1:
            self._request_stop()  # what the SIGINT handler does
        return out

    monkeypatch.setattr(Trainer, "train_step", interrupted_in_step_two)
    trainer = _train(config)
    assert trainer.step == 2
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step-00000002"]


def test_nan_loss_stops_the_run_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    config = _config(tmp_path, run={"max_steps": 6})
    real_loss = trainer_module.generator_loss

    def poisoned(*args, **kwargs):
        total, parts = real_loss(*args, **kwargs)
        return (total * float("nan"), parts) if poisoned.calls == 2 else (total, parts)

    def counting(*args, **kwargs):
        result = poisoned(*args, **kwargs)
        poisoned.calls += 1
        return result

    poisoned.calls = 0
    monkeypatch.setattr(trainer_module, "generator_loss", counting)
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000002"
    with pytest.raises(TrainingDiverged, match=r"step 2: generator loss is not finite.*step-00000002"):
        _train(config)
    assert [p.name for p in checkpoint.parent.iterdir()] == ["step-00000002"]
    before = {f.name: f.read_bytes() for f in checkpoint.iterdir()}
    assert set(before) == {"generator.safetensors", "training.pt", "rank-0.pt"}


# ----------------------------------------------------------------------------- data and errors


def _official_center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """The official dataset's centre crop, written out: (H, W, 3) uint8 -> (size, size, 3). While the short side is
    at least twice the crop, halve both sides (floor) with Pillow's box filter; then one bicubic resize that brings
    the short side to `size` (each side rounded); then the centred window, offsets floored."""
    pil = Image.fromarray(image)
    while min(pil.width, pil.height) >= 2 * size:
        pil = pil.resize((pil.width // 2, pil.height // 2), Image.Resampling.BOX)
    factor = size / min(pil.width, pil.height)
    pil = pil.resize((round(pil.width * factor), round(pil.height * factor)), Image.Resampling.BICUBIC)
    out = np.asarray(pil)
    top, left = (out.shape[0] - size) // 2, (out.shape[1] - size) // 2
    return out[top : top + size, left : left + size]


CROP_CASES = [(4000, 3000, (1365, 1024)), (3000, 2048, (1500, 1024)), (700, 500, (1434, 1024))]


@pytest.mark.parametrize(("width", "height", "resized"), CROP_CASES)
def test_center_crop_is_the_official_resize_then_centre_crop(width, height, resized):
    """4000x3000: one halving (3000 >= 2048) to 2000x1500, bicubic to 1365x1024, centre 1024; 3000x2048 is halved
    (2048 >= 2 x 1024) to exactly 1500x1024; 700x500 is smaller than the crop and is upscaled to 1434x1024, not
    skipped."""
    rng = np.random.default_rng(0)
    smooth = np.linspace(0, 255, width)[None, :, None] * np.linspace(0.2, 1, height)[:, None, None]
    image = np.clip(smooth + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
    assert resize_short_side(Image.fromarray(image), 1024).size == resized
    got = official_crop(torch.from_numpy(image).permute(2, 0, 1), 1024, "center", torch.Generator())
    assert got.shape == (3, 1024, 1024) and got.dtype == torch.uint8
    np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), _official_center_crop(image, 1024))
    plain = image[(height - 1024) // 2 : (height + 1024) // 2, (width - 1024) // 2 : (width + 1024) // 2]
    assert plain.shape[:2] != (1024, 1024) or not np.array_equal(plain, got.permute(1, 2, 0).numpy())


def test_random_crop_draws_a_short_side_in_the_official_range_then_a_window():
    image = torch.from_numpy(np.ascontiguousarray(data.astronaut())).permute(2, 0, 1)  # 512x512
    size, shorts = 128, set()
    for seed in range(40):
        gen = torch.Generator().manual_seed(seed)
        got = official_crop(image, size, "random", gen)
        replay = torch.Generator().manual_seed(seed)
        short = int(torch.randint(128, 183 + 1, (1,), generator=replay))  # [R, ceil(R / 0.7)] = [128, 183]
        resized = np.asarray(resize_short_side(Image.fromarray(data.astronaut()), short))
        top = int(torch.randint(0, resized.shape[0] - size + 1, (1,), generator=replay))
        left = int(torch.randint(0, resized.shape[1] - size + 1, (1,), generator=replay))
        np.testing.assert_array_equal(got.permute(1, 2, 0).numpy(), resized[top : top + size, left : left + size])
        shorts.add(short)
    assert min(shorts) < 140 and max(shorts) > 170


def test_crop_sampler_is_deterministic_and_skips_bad_images(tmp_path, caplog):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(data.astronaut()).save(folder / "good.png")
    Image.fromarray(data.astronaut()[:20, :20]).save(folder / "small.png")
    (folder / "broken.png").write_bytes(b"nope")
    config = _config(tmp_path, data={"skimage_images": [], "folders": [str(folder)], "crop": "patch"}).data
    a, b = CropSampler(config, seed=1), CropSampler(config, seed=1)
    batches = [a.batch(step, 0, 1, 2) for step in range(4)]
    assert all(torch.equal(x.hr, b.batch(s, 0, 1, 2).hr) for s, x in enumerate(batches))
    assert sum(x.skipped for x in batches) > 0 and all(x.hr.shape == (2, 3, 64, 64) for x in batches)
    assert "broken.png" in caplog.text and "smaller than the 64 crop" in caplog.text


def test_center_crop_sampler_upscales_small_images_and_matches_the_official_rule(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    photos = {"wide.png": data.coffee()[:200, :300], "small.png": data.astronaut()[:30, :40]}
    for name, array in photos.items():
        Image.fromarray(np.ascontiguousarray(array)).save(folder / name)
    config = _config(tmp_path, data={"skimage_images": [], "folders": [str(folder)], "crop": "center",
                                     "flip": False}).data  # fmt: skip
    sampler = CropSampler(config, seed=0)
    batch = sampler.batch(0, 0, 1, 2)
    assert batch.skipped == 0 and batch.hr.shape == (2, 3, 64, 64)
    expected = {name: _official_center_crop(np.ascontiguousarray(a), 64) for name, a in photos.items()}
    got = [(b.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for b in batch.hr]
    order = [p.rsplit("/", 1)[-1] for p in sampler.sources]
    picked = [sampler._pick(slot, 0).rsplit("/", 1)[-1] for slot in range(2)]
    assert sorted(picked) == sorted(order)
    for name, array in zip(picked, got):
        np.testing.assert_array_equal(array, expected[name])


def test_empty_dataset_and_foreign_checkpoint_are_clear_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError, match="folder has no images"):
        Trainer(_config(tmp_path, data={"skimage_images": [], "folders": [str(empty)]}))
    _train(_config(tmp_path / "z", model={"preset": "tiny-zimage"}, run={"max_steps": 2}))
    with pytest.raises(CheckpointError, match="preset 'tiny-zimage'"):
        Trainer(_config(tmp_path, run={"resume_from": str(tmp_path / "z" / "run")}))


def test_cli_writes_resolved_config_and_exports_weights(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(textwrap.dedent(f"""
        [model]
        preset = "tiny"
        lora_rank = 0
        device = "cpu"
        [data]
        skimage_images = ["astronaut"]
        resolution = 64
        [degradation]
        kind = "bicubic"
        [loss]
        lambda_lpips = 0.0
        lambda_gan = 0.0
        [run]
        output_dir = "{tmp_path / 'run'}"
        max_steps = 2
        gradient_checkpointing = false
    """))
    assert main([str(recipe), "--set", "optim.batch_size=1"]) == 0
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert resolved["optim"]["batch_size"] == 1 and resolved["run"]["max_steps"] == 2
    out = export_weights(tmp_path / "run", tmp_path / "w.safetensors")
    from strsr.inference.pipeline import SuperResolver

    resolver = SuperResolver.from_preset("tiny", checkpoint=out)
    assert resolver.upscale_tensor(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)
    assert main([str(recipe), "--set", "optim.nope=1"]) == 2


@pytest.mark.slow
def test_torchrun_two_ranks_stay_identical(tmp_path):
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not on PATH")
    script = tmp_path / "ddp.py"
    script.write_text(textwrap.dedent(f"""
        import hashlib, json, os
        import torch, torch.distributed as dist
        from strsr.train.config import from_dict
        from strsr.train.trainer import Trainer
        config = from_dict({{
            "model": {{"preset": "tiny", "lora_rank": 4, "device": "cpu"}},
            "data": {{"skimage_images": ["astronaut", "coffee"], "resolution": 64, "crop": "random"}},
            "degradation": {{"kind": "realesrgan", "queue_size": 0}},
            "loss": {{"lambda_lpips": 0.0, "lambda_gan": 0.1}},
            "discriminator": {{"model": "tiny"}},
            "optim": {{"batch_size": 1, "lr_g": 1e-3, "lr_d": 1e-3}},
            "run": {{"output_dir": "{tmp_path / 'run'}", "max_steps": 3, "checkpoint_every": 3,
                     "gradient_checkpointing": False}},
        }})
        trainer = Trainer(config)
        trainer.train()
        digest = hashlib.sha256()
        for module in (trainer.c.generator, trainer.c.discriminator):
            for name, p in module.named_parameters():
                if p.requires_grad or "heads" in name:
                    digest.update(p.detach().numpy().tobytes())
        digests = [None] * dist.get_world_size()
        dist.all_gather_object(digests, digest.hexdigest())
        if dist.get_rank() == 0:
            json.dump(digests, open("{tmp_path / 'digests.json'}", "w"))
        trainer.close()
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    result = subprocess.run([torchrun, "--nproc_per_node=2", "--no-python", sys.executable, str(script)],
                            capture_output=True, text=True, timeout=600, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    digests = json.loads((tmp_path / "digests.json").read_text())
    assert len(digests) == 2 and digests[0] == digests[1]


def test_grid_artifact_monitor_is_logged(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from strsr.evaluation.grid_artifacts import grid_artifact_score

    config = _config(tmp_path, run={"max_steps": 2, "grid_every": 1, "log_every": 100, "sample_every": 0},
                     degradation={"kind": "bicubic"})  # fmt: skip
    trainer = _train(config)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    grid = events.Scalars("monitor/grid")
    assert [e.step for e in grid] == [1, 2] and [e.step for e in events.Scalars("monitor/grid_excess")] == [1, 2]
    _, out, _ = (((x.float() + 1) / 2).clamp(0, 1) for x in trainer._last_images)
    assert grid[-1].value == pytest.approx(grid_artifact_score(out, 8).mean().item(), rel=1e-5)

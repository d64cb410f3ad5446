"""A run folder from elsewhere cannot run code, a run never loses its checkpoints, and bad settings are one clear
error before any work."""

import math
import os
import stat

import pytest
import torch
from safetensors.torch import save_file

from strsr.model.build import build_generator
from strsr.model.checkpoint import CheckpointError
from strsr.spec import ModelSpec
from strsr.train import checkpointing
from strsr.train.components import build_components
from strsr.train.config import ConfigError, from_dict, load_config
from strsr.train.trainer import Trainer


def _config(tmp_path, preset="tiny", **run):
    return from_dict({
        "model": {"preset": preset, "lora_rank": 4, "device": "cpu"},
        "data": {"skimage_images": ["astronaut"], "resolution": 64},
        "degradation": {"kind": "bicubic"},
        "loss": {"lambda_lpips": 0.0, "lambda_gan": 0.0},
        "optim": {"batch_size": 1},
        "run": {"output_dir": str(tmp_path / "run"), "max_steps": 2, "checkpoint_every": 1,
                "gradient_checkpointing": False, **run},
    })  # fmt: skip


def _train(config, **kwargs):
    trainer = Trainer(config, **kwargs)
    try:
        trainer.train()
    finally:
        trainer.close()
    return trainer


class _Payload:
    """Unpickling it creates a file: what a hostile checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["rank-0.pt", "training.pt"])
def test_resuming_a_hostile_run_folder_runs_no_code(tmp_path, name):
    _train(_config(tmp_path))
    last = checkpointing.latest_checkpoint(tmp_path / "run" / "checkpoints")
    marker = tmp_path / "pwned"
    torch.save({"rng": _Payload(marker), "step": 2}, last / name)
    with pytest.raises(CheckpointError, match="refused, loading it would run code from the file"):
        Trainer(_config(tmp_path), resume=True)
    assert not marker.exists()


def test_a_resumed_run_reads_its_own_plain_state(tmp_path):
    """The RNG states are stored as tensors and plain values, so weights_only loading restores them exactly."""
    import random

    import numpy as np

    random.seed(3)
    np.random.seed(4)
    state = checkpointing.rng_state()
    torch.save(state, tmp_path / "rng.pt")
    want = (random.random(), np.random.rand(), torch.rand(1).item())
    checkpointing.set_rng_state(torch.load(tmp_path / "rng.pt", weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == want


def test_a_fresh_run_never_prunes_an_existing_one(tmp_path):
    _train(_config(tmp_path))
    root = tmp_path / "run" / "checkpoints"
    before = sorted(p.name for p in root.iterdir())
    with pytest.raises(CheckpointError, match=r"already holds a run \(checkpoints up to step-00000002\).*--resume.*"
                                              r"--overwrite"):
        Trainer(_config(tmp_path, max_steps=1))
    assert sorted(p.name for p in root.iterdir()) == before
    trainer = _train(_config(tmp_path, max_steps=1), overwrite=True)
    assert trainer.step == 1 and sorted(p.name for p in root.iterdir()) == ["step-00000001"]


def test_a_full_disk_keeps_the_earlier_checkpoints_and_says_so_in_one_line(tmp_path, monkeypatch):
    trainer = Trainer(_config(tmp_path, max_steps=3))
    try:
        trainer.train_step()
        trainer.step += 1  # as the loop counts
        trainer.save()
        real_save = torch.save

        def disk_full(obj, path, *args, **kwargs):
            if str(path).endswith("training.pt"):
                raise RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing "
                                   "file data/3: file write failed\nframe #0: c10::ThrowEnforceNotMet")  # fmt: skip
            return real_save(obj, path, *args, **kwargs)

        monkeypatch.setattr(checkpointing.torch, "save", disk_full)
        trainer.train_step()
        trainer.step += 1
        with pytest.raises(CheckpointError) as err:
            trainer.save()
    finally:
        trainer.close()
    message = str(err.value)
    assert "\n" not in message and "cannot write the step-2 checkpoint" in message and "file write failed" in message
    root = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step-00000001"]  # intact, and no half-written staging
    monkeypatch.undo()
    Trainer(_config(tmp_path), resume=True).close()  # still resumable


def test_checkpoint_files_are_world_readable(tmp_path):
    previous = os.umask(0o022)
    try:
        _train(_config(tmp_path, max_steps=1))
    finally:
        os.umask(previous)
    last = checkpointing.latest_checkpoint(tmp_path / "run" / "checkpoints")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in last.iterdir()}
    assert modes and all(mode == 0o644 for mode in modes.values()), modes


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("run.checkpoint_every=0", "run.checkpoint_every=0 must be at least 1"),
        ("run.log_every=0", "run.log_every=0 must be at least 1"),
        ("run.max_steps=-5", "run.max_steps=-5 must be at least 1"),
        ("data.resolution=0", "data.resolution=0 must be at least 64"),
        ("data.resolution=100", "must be a multiple of 64"),
        ("optim.batch_size=0", "optim.batch_size=0 must be at least 1"),
        ("optim.lr_g=nan", "optim.lr_g=nan must be a finite number above 0"),
        ("optim.lr_d=0", "optim.lr_d=0.0 must be a finite number above 0"),
        ("loss.lambda_l1=-1", "loss.lambda_l1=-1.0 must be a finite number at least 0"),
        ("optim.betas=[0.9, 1.0]", r"optim.betas=\(0.9, 1.0\) must lie in \[0, 1\)"),
        ("model.precision=fp8", r"\[model\] --precision 'fp8'"),
        ("degradation.kind=nearest", r"\[degradation\] kind 'nearest'"),
    ],
)
def test_bad_settings_are_one_clear_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny", [override])


def test_an_output_folder_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "run").write_text("not a folder")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        load_config("tiny", [f"run.output_dir={tmp_path / 'run'}"])


def test_nan_is_refused_as_a_learning_rate_not_just_compared():
    assert math.isnan(float("nan"))  # TOML's nan literal reaches the check as a float
    with pytest.raises(ConfigError):
        load_config("tiny", ["optim.lr_adapter=nan"])


@pytest.mark.parametrize("preset", ["tiny", "tiny-zimage"])
def test_zero_init_velocity_starts_at_the_autoencoder_round_trip(tmp_path, preset):
    components = build_components(_config(tmp_path, preset=preset, zero_init_velocity=True), torch.device("cpu"))
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        out = components.generator(image)
    torch.testing.assert_close(out, image, rtol=0, atol=1e-5)  # velocity 0: the lossless pixel-shuffle round trip


def test_a_checkpoint_whose_rank_is_not_a_number_names_the_file(tmp_path):
    model = build_generator(ModelSpec(preset="tiny", random_weights=True))
    tensors = {k: v.contiguous() for k, v in model.trainable_state_dict().items()}
    path = tmp_path / "odd.safetensors"
    save_file(tensors, path, metadata={"format": "strsr.generator.v1", "preset": "tiny", "lora_rank": "sixteen",
                                       "conditioning": "none"})  # fmt: skip
    with pytest.raises(CheckpointError, match=r"odd.safetensors: its metadata says lora_rank 'sixteen', not a number"):
        build_generator(ModelSpec(preset="tiny", checkpoint=path))

"""Pretrained folders, strsr checkpoints, and their clear errors."""

import pytest
import torch
from safetensors.torch import save_file

from strsr.model.backbones import build_transformer
from strsr.model.build import build_generator
from strsr.model.checkpoint import CheckpointError, load_generator, read_metadata, save_generator
from strsr.spec import MissingWeightsError, ModelSpec


@pytest.fixture
def pretrained_dir(tmp_path, flux2_kl_preset, tiny_flux2_vae):
    build_transformer(flux2_kl_preset, seed=7).save_pretrained(tmp_path / "transformer")
    tiny_flux2_vae.save_pretrained(tmp_path / "vae")
    return tmp_path


def test_pretrained_folder_loads_the_saved_weights(pretrained_dir, flux2_kl_preset, tiny_flux2_vae):
    model = build_generator(ModelSpec(pretrained=pretrained_dir), preset=flux2_kl_preset)
    reference = build_transformer(flux2_kl_preset, seed=7)
    loaded = {k.replace(".base_layer", ""): v for k, v in model.diffusers_transformer.state_dict().items()
              if "lora_" not in k}  # fmt: skip
    expected = reference.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    torch.testing.assert_close(model.codec.bn_mean.flatten(), tiny_flux2_vae.bn.running_mean)


def test_missing_pretrained_files_are_named(pretrained_dir, flux2_kl_preset):
    (pretrained_dir / "vae" / "config.json").unlink()
    with pytest.raises(MissingWeightsError, match=r"vae/config.json: missing VAE config"):
        build_generator(ModelSpec(pretrained=pretrained_dir), preset=flux2_kl_preset)
    for f in (pretrained_dir / "transformer").glob("*.safetensors"):
        f.unlink()
    with pytest.raises(MissingWeightsError, match=r"transformer: no transformer weights"):
        build_generator(ModelSpec(pretrained=pretrained_dir), preset=flux2_kl_preset)


def test_pretrained_for_another_architecture_is_refused(pretrained_dir):
    with pytest.raises(ValueError, match="does not match preset 'tiny'.*in_channels=16 \\(preset: 192\\)"):
        build_generator(ModelSpec(preset="tiny", pretrained=pretrained_dir))


def test_full_preset_without_weights_says_what_to_pass():
    with pytest.raises(ValueError, match="--pretrained DIR.*--random-weights"):
        build_generator(ModelSpec(preset="flux2-klein-4b"))


def test_checkpoint_round_trip_restores_outputs(tmp_path, randomise_lora):
    model = build_generator(ModelSpec(preset="tiny", seed=1, random_weights=True))
    randomise_lora(model.transformer, seed=2)
    with torch.no_grad():
        model.conditioning.embedding.normal_()
    path = save_generator(model, tmp_path / "g.safetensors")
    assert read_metadata(path) == {"format": "strsr.generator.v1", "preset": "tiny", "lora_rank": "16",
                                   "conditioning": "none"}  # fmt: skip
    assert [p.name for p in tmp_path.iterdir()] == ["g.safetensors"]  # no temporary left behind
    restored = build_generator(ModelSpec(preset="tiny", seed=1, checkpoint=path))
    image = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(restored(image), model(image), rtol=0, atol=0)


def test_checkpoint_for_another_preset_or_rank_is_refused(tmp_path):
    model = build_generator(ModelSpec(preset="tiny", random_weights=True))
    path = save_generator(model, tmp_path / "tiny.safetensors")
    with pytest.raises(CheckpointError, match="for preset 'tiny', the model has 'tiny-zimage'"):
        build_generator(ModelSpec(preset="tiny-zimage", checkpoint=path))
    with pytest.raises(CheckpointError, match="for LoRA rank '16', the model has '8'"):
        build_generator(ModelSpec(preset="tiny", lora_rank=8, checkpoint=path))


def test_malformed_checkpoints_are_refused(tmp_path):
    model = build_generator(ModelSpec(preset="tiny", random_weights=True))
    tensors = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    meta = {"format": "strsr.generator.v1", "preset": "tiny", "lora_rank": "16", "conditioning": "NullConditioning"}
    first = sorted(tensors)[0]
    broken = dict(tensors)
    broken.pop(first)
    broken["extra.weight"] = torch.zeros(1)
    save_file(broken, tmp_path / "bad.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match=rf"missing: {first}.*unexpected: extra.weight"):
        load_generator(model, tmp_path / "bad.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.safetensors: not a readable safetensors checkpoint"):
        load_generator(model, tmp_path / "junk.safetensors")
    with pytest.raises(CheckpointError, match="nope.safetensors: checkpoint file not found"):
        load_generator(model, tmp_path / "nope.safetensors")

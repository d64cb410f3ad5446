"""Official StrSR checkpoints (peft state_dict.pth + projector.pth) load exactly, convert both ways, fail clearly.

The official-layout files are written here the way the official training does it: peft's `get_peft_model` with
`LoraConfig(r, lora_alpha=r, init_lora_weights="gaussian", target_modules=<resolved names>)` on the transformer,
`torch.save` of its trainable parameters, and `torch.save` of a Linear-SiLU-Linear projector's state dict.
"""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file
from torch import nn

from strsr.model.adapter import VLMConditioning, adapter_for
from strsr.model.backbones import Condition, build_autoencoder, build_transformer, predict_velocity
from strsr.model.checkpoint import CheckpointError, load_generator, save_generator
from strsr.model.conditioning import NullConditioning
from strsr.model.generator import StrSRGenerator
from strsr.model.lora import add_lora
from strsr.model.official_checkpoint import (
    is_official_checkpoint,
    load_official_checkpoint,
    official_layout,
    official_lora_rank,
    official_to_strsr,
    save_official_checkpoint,
    strsr_to_official,
)
from strsr.presets import get_preset

VLM_WIDTH = 24  # a tiny VLM's text width


def _official_model(preset, rank, seed=0):
    """The official training's wrapping, written independently of strsr.model.lora: peft on every target Linear."""
    transformer = build_transformer(preset, seed=0)
    targets = [
        name
        for name, m in transformer.named_modules()
        if isinstance(m, nn.Linear) and any(name == s or name.endswith("." + s) for s in preset.lora_targets)
    ]
    config = LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=targets)
    model = get_peft_model(transformer, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # trained-looking adapters: B is zero after gaussian init
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    hidden = preset.condition_width // 2
    torch.manual_seed(seed + 1)
    projector = nn.Sequential(nn.Linear(VLM_WIDTH, hidden), nn.SiLU(), nn.Linear(hidden, preset.condition_width))
    return model.eval(), projector


def _write_official(folder, model, projector):
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach() for k, v in model.named_parameters() if v.requires_grad}, folder / "state_dict.pth")
    torch.save(projector.state_dict(), folder / "projector.pth")
    return folder


def _strsr_model(preset, *, device="cpu", alpha=None):
    rank = preset.lora_rank
    transformer = add_lora(build_transformer(preset, seed=0, device=device), preset.lora_targets, rank=rank,
                           alpha=rank if alpha is None else alpha)  # fmt: skip
    with torch.device(device):
        conditioning = VLMConditioning(adapter_for(preset, VLM_WIDTH))
    return StrSRGenerator(preset, transformer, build_autoencoder(preset, device=device), conditioning).eval()


def _inputs(preset, seed=0):
    gen = torch.Generator().manual_seed(seed)
    channels = preset.latents.channels * (4 if preset.family == "flux2" else 1)
    return torch.randn(2, channels, 4, 6, generator=gen), torch.randn(2, 7, VLM_WIDTH, generator=gen)


@pytest.fixture(params=["tiny", "tiny-zimage"])
def official(request, tmp_path):
    preset = get_preset(request.param)
    model, projector = _official_model(preset, preset.lora_rank)
    return preset, model, projector, _write_official(tmp_path / "official", model, projector)


def _strsr_velocity(model, state, features):
    with torch.no_grad():
        return model.velocity(state, model.conditioning.from_features(features))


def test_official_checkpoint_reproduces_the_peft_model_exactly(official):
    preset, reference, projector, folder = official
    assert is_official_checkpoint(folder) and official_lora_rank(folder) == preset.lora_rank
    model = _strsr_model(preset)
    load_official_checkpoint(model, folder)
    state, features = _inputs(preset)
    with torch.no_grad():
        want = predict_velocity(preset, reference, state, preset.model_t, Condition(projector(features)))
        with reference.disable_adapter():
            plain = predict_velocity(preset, reference, state, preset.model_t, Condition(projector(features)))
    assert (want - plain).abs().max() > 1e-3  # the LoRA matters, so equality below is not vacuous
    assert torch.equal(_strsr_velocity(model, state, features), want)
    # and the whole generator, pixels in, pixels out
    image = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(3)) * 2 - 1
    ref_gen = StrSRGenerator(preset, reference, build_autoencoder(preset), NullConditioning(preset.condition_width))
    with torch.no_grad():
        got = model(image, model.conditioning.from_features(features[:1]))
        assert torch.equal(got, ref_gen(image, Condition(projector(features[:1]))))


def test_round_trip_through_strsr_format(official, tmp_path):
    preset, _, _, folder = official
    template = _strsr_model(preset, device="meta")  # shapes only: how the converter runs for full presets
    converted = official_to_strsr(folder, tmp_path / "strsr.safetensors", template)
    assert not is_official_checkpoint(converted)
    model = _strsr_model(preset)
    load_generator(model, converted)  # strsr's own loader accepts it
    state, features = _inputs(preset, seed=1)
    official_model = _strsr_model(preset)
    load_official_checkpoint(official_model, folder)
    assert torch.equal(_strsr_velocity(model, state, features), _strsr_velocity(official_model, state, features))

    back = strsr_to_official(converted, tmp_path / "back", template)
    for name in ("state_dict.pth", "projector.pth"):
        original = torch.load(folder / name, weights_only=True)
        again = torch.load(back / name, weights_only=True)
        assert list(again) == list(original)  # same keys, same order
        assert all(again[k].dtype == original[k].dtype and torch.equal(again[k], original[k]) for k in original)

    saved = save_official_checkpoint(model, tmp_path / "saved")  # straight from a model in memory
    for name in ("state_dict.pth", "projector.pth"):
        original, written = (torch.load(f / name, weights_only=True) for f in (folder, saved))
        assert list(written) == list(original) and all(torch.equal(written[k], original[k]) for k in original)


def test_bf16_official_weights_keep_their_dtype_through_conversion(official, tmp_path):
    preset, _, _, folder = official
    for name in ("state_dict.pth", "projector.pth"):
        torch.save({k: v.bfloat16() for k, v in torch.load(folder / name).items()}, folder / name)
    template = _strsr_model(preset, device="meta")
    tensors = load_file(official_to_strsr(folder, tmp_path / "bf16.safetensors", template))
    assert tensors and all(t.dtype == torch.bfloat16 for t in tensors.values())


def _mutate(folder, name, change):
    data = torch.load(folder / name, weights_only=True)
    change(data)
    torch.save(data, folder / name)


def _first_lora_a(data):
    return next(k for k in data if ".lora_A." in k)


MALFORMED = {
    "missing key": (
        lambda f: _mutate(f, "state_dict.pth", lambda d: d.pop(_first_lora_a(d))),
        r"state_dict\.pth: missing base_model\.model\..*lora_A\.default\.weight",
    ),
    "extra key": (
        lambda f: _mutate(f, "projector.pth", lambda d: d.update({"4.weight": torch.zeros(2, 2)})),
        r"projector\.pth: unexpected 4\.weight",
    ),
    "wrong shape": (
        lambda f: _mutate(f, "projector.pth", lambda d: d.update({"2.bias": torch.zeros(3)})),
        r"projector\.pth: wrong shape 2\.bias \(3,\) != \(64,\)",
    ),
    "non-tensor": (
        lambda f: _mutate(f, "state_dict.pth", lambda d: d.update({_first_lora_a(d): [0.0, 1.0]})),
        r"state_dict\.pth: not a tensor: base_model\.model\.",
    ),
    "missing file": (lambda f: (f / "projector.pth").unlink(), r"missing projector\.pth"),
    "not a dict": (
        lambda f: torch.save([torch.zeros(1)], f / "projector.pth"),
        r"projector\.pth: holds a list, not a dict of named tensors",
    ),
    "pickled module": (
        lambda f: torch.save(nn.Linear(2, 2), f / "projector.pth"),
        r"projector\.pth: not a weights-only torch checkpoint",
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_checkpoints_fail_clearly_and_load_nothing(case, tmp_path):
    preset = get_preset("tiny")
    folder = _write_official(tmp_path / "official", *_official_model(preset, preset.lora_rank))
    corrupt, message = MALFORMED[case]
    corrupt(folder)
    model = _strsr_model(preset)
    before = {k: v.clone() for k, v in model.trainable_state_dict().items()}
    with pytest.raises(CheckpointError, match=message):
        load_official_checkpoint(model, folder)
    assert all(torch.equal(before[k], v) for k, v in model.trainable_state_dict().items())
    with pytest.raises(CheckpointError, match=message):
        official_to_strsr(folder, tmp_path / "out.safetensors", _strsr_model(preset, device="meta"))
    assert not (tmp_path / "out.safetensors").exists()


def test_wrong_rank_is_named(tmp_path):
    preset = get_preset("tiny")
    folder = _write_official(tmp_path / "official", *_official_model(preset, rank=8))
    with pytest.raises(CheckpointError, match=r"LoRA rank 8, the model has rank 16") as err:
        load_official_checkpoint(_strsr_model(preset), folder)
    assert "wrong shape" in str(err.value)  # the shapes that follow from it are listed too
    assert official_lora_rank(folder) == 8  # what a build should use instead


def test_all_problems_in_one_error(tmp_path):
    preset = get_preset("tiny")
    folder = _write_official(tmp_path / "official", *_official_model(preset, preset.lora_rank))
    _mutate(folder, "state_dict.pth", lambda d: d.update({"base_model.model.x.lora_A.default.weight": d.pop(
        _first_lora_a(d))}))  # fmt: skip
    _mutate(folder, "projector.pth", lambda d: d.pop("0.bias"))
    with pytest.raises(CheckpointError) as err:
        load_official_checkpoint(_strsr_model(preset), folder)
    text = str(err.value)
    assert "state_dict.pth: missing" in text and "state_dict.pth: unexpected base_model.model.x" in text
    assert "projector.pth: missing 0.bias" in text


def test_models_the_layout_cannot_describe_are_refused(tmp_path):
    preset = get_preset("tiny")
    folder = _write_official(tmp_path / "official", *_official_model(preset, preset.lora_rank))
    with pytest.raises(CheckpointError, match=r"LoRA scale 1 \(alpha = rank\); this model uses \[2\.0\]"):
        load_official_checkpoint(_strsr_model(preset, alpha=2 * preset.lora_rank), folder)
    transformer = add_lora(build_transformer(preset), preset.lora_targets, rank=16, alpha=16)
    null = StrSRGenerator(preset, transformer, build_autoencoder(preset), NullConditioning(preset.condition_width))
    with pytest.raises(CheckpointError, match=r"one VLM adapter.*NullConditioning"):
        load_official_checkpoint(null, folder)
    with pytest.raises(CheckpointError, match="not a folder"):
        load_official_checkpoint(_strsr_model(preset), folder / "state_dict.pth")


def test_strsr_file_for_another_model_is_not_converted(tmp_path):
    tiny, zimage = get_preset("tiny"), get_preset("tiny-zimage")
    path = save_generator(_strsr_model(tiny), tmp_path / "tiny.safetensors")
    with pytest.raises(CheckpointError, match=r"another model \(preset 'tiny' != 'tiny-zimage'"):
        strsr_to_official(path, tmp_path / "out", _strsr_model(zimage, device="meta"))
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_official_layout_of_the_full_flux2_klein_preset():
    """What the released StrSR-flux files must hold: r = 256 LoRA under peft keys, a 2560 -> 3840 -> 7680 projector."""
    preset = get_preset("flux2-klein-4b")
    transformer = add_lora(build_transformer(preset, device="meta"), preset.lora_targets, rank=256, alpha=256)
    with torch.device("meta"):
        conditioning = VLMConditioning(adapter_for(preset))  # Qwen3-VL-4B's 2560-wide features
    vae = build_autoencoder(preset, device="meta")
    layout = official_layout(StrSRGenerator(preset, transformer, vae, conditioning))
    assert layout.rank == 256
    lora = layout.expected(layout.lora)
    assert lora["base_model.model.transformer_blocks.0.attn.to_q.lora_A.default.weight"] == (256, 3072)
    assert lora["base_model.model.single_transformer_blocks.19.attn.to_out.lora_B.default.weight"] == (3072, 256)
    assert "base_model.model.transformer_blocks.0.attn.to_out.lora_A.default.weight" not in lora  # a ModuleList
    assert all(k.startswith("base_model.model.") and ".default.weight" in k for k in lora)
    assert {k: tuple(v) for k, v in layout.expected(layout.projector).items()} == {
        "0.weight": (3840, 2560), "0.bias": (3840,), "2.weight": (7680, 3840), "2.bias": (7680,),
    }  # fmt: skip

"""The paper's three conditioning arms (vlm, text, none) through every tool on the tiny preset: inference, training,
export with the ONNX backend, and the benchmark; and official-layout checkpoints loaded by folder."""

import json

import pytest
import torch
from PIL import Image
from skimage import data

from strsr.bench.cli import main as bench_main
from strsr.export.cli import main as export_main
from strsr.inference.cli import main as upscale_main
from strsr.inference.pipeline import SuperResolver
from strsr.model.build import build_generator
from strsr.model.official_checkpoint import save_official_checkpoint
from strsr.spec import ModelSpec
from strsr.train.config import from_dict
from strsr.train.trainer import Trainer

pytestmark = pytest.mark.slow
MODES = ("none", "text", "vlm")


@pytest.fixture(scope="module")
def mode_flags(tiny_vlm_dir, tiny_text_encoder_dir):
    return {
        "none": ["--conditioning", "none"],
        "text": ["--conditioning", "text", "--text-encoder", str(tiny_text_encoder_dir), "--prompt", "a sharp photo"],
        "vlm": ["--conditioning", "vlm", "--vlm", str(tiny_vlm_dir)],
    }


def _lr_photo(path, size=24):
    Image.fromarray(data.coffee()[100 : 100 + size, 200 : 200 + size]).save(path)
    return path


def _lr_tensor(size=16):
    return torch.from_numpy(data.coffee()[100 : 100 + size, 200 : 200 + size]).permute(2, 0, 1)[None].float() / 255


@pytest.mark.parametrize("mode", MODES)
def test_upscale_runs_in_each_mode(mode, mode_flags, tmp_path):
    photo = _lr_photo(tmp_path / "c.png")
    assert upscale_main([str(photo), "-o", str(tmp_path / "out"), "--quiet", *mode_flags[mode]]) == 0
    assert Image.open(tmp_path / "out" / "c.png").size == (96, 96)


def test_vlm_condition_depends_on_the_image_and_is_computed_once_per_image(tiny_vlm_dir, monkeypatch):
    resolver = SuperResolver.from_preset("tiny", conditioning="vlm", vlm=tiny_vlm_dir, tile=32, overlap=8)
    encoder = resolver.model.conditioning.encoder
    calls = []
    run = encoder._run
    monkeypatch.setattr(encoder, "_run", lambda pixels: calls.append(len(pixels)) or run(pixels))
    lr = _lr_tensor(24)  # 96 px output in 32 px tiles: 16 tiles, one VLM pass
    resolver.upscale_tensor(lr)
    assert calls == [1]
    a = resolver.model.condition_for(lr).tokens
    b = resolver.model.condition_for(torch.flip(lr, dims=[-1])).tokens
    assert a.shape == b.shape and (a - b).abs().max() > 1e-6


@pytest.mark.parametrize("mode", MODES)
def test_training_runs_in_each_mode_and_trains_the_adapter(mode, tiny_vlm_dir, tiny_text_encoder_dir, tmp_path):
    model = {"none": {}, "text": {"text_encoder": str(tiny_text_encoder_dir), "prompt": "a sharp photo"},
             "vlm": {"vlm": str(tiny_vlm_dir)}}[mode]  # fmt: skip
    config = from_dict({
        "model": {"preset": "tiny", "lora_rank": 4, "device": "cpu", "conditioning": mode, **model},
        "data": {"skimage_images": ["astronaut"], "resolution": 32},
        "degradation": {"kind": "bicubic"},
        "loss": {"lambda_lpips": 0.0, "lambda_gan": 0.0},
        "optim": {"batch_size": 1, "lr_g": 1e-3, "lr_adapter": 5e-4},
        "run": {"output_dir": str(tmp_path / "run"), "max_steps": 2, "gradient_checkpointing": False},
    })  # fmt: skip
    trainer = Trainer(config)
    try:
        generator = trainer.c.generator
        before = {k: v.clone() for k, v in generator.trainable_state_dict().items()}
        losses = [trainer.train_step()["g/total"] for _ in range(2)]
    finally:
        trainer.close()
    assert all(torch.isfinite(torch.tensor(losses)))
    after = generator.trainable_state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any("lora" in k for k in changed)
    if mode == "vlm":
        assert {k for k in after if k.startswith("conditioning.adapter.")} <= changed  # the adapter trains
        assert [g["lr"] for g in trainer.c.opt_g.param_groups] == [1e-3, 5e-4]  # in its own group
        assert not any(k.startswith("conditioning.encoder") for k in after)  # the VLM stays frozen and outside


@pytest.mark.parametrize("mode", MODES)
def test_export_and_onnx_backend_in_each_mode(mode, mode_flags, tmp_path, tiny_vlm_dir, tiny_text_encoder_dir):
    out = tmp_path / mode
    flags = mode_flags[mode] if mode != "none" else []
    assert export_main(["--preset", "tiny", "-o", str(out), "--random-weights", *flags]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["conditioning"]["mode"] == mode
    assert ("projector" in manifest["graphs"]) == (mode == "vlm")
    assert (out / "condition.safetensors").exists() == (mode != "vlm")  # the VLM's tokens vary per image

    kwargs = {"none": {}, "text": {"text_encoder": tiny_text_encoder_dir, "prompt": "a sharp photo"},
              "vlm": {"vlm": tiny_vlm_dir}}[mode]  # fmt: skip
    torch_out = SuperResolver.from_preset("tiny", random_weights=True, device="cpu", conditioning=mode,
                                          **kwargs).upscale_tensor(_lr_tensor())  # fmt: skip
    onnx_out = SuperResolver.from_export(out, ModelSpec(preset="tiny", vlm=kwargs.get("vlm"))).upscale_tensor(
        _lr_tensor())  # fmt: skip
    psnr = 10 * torch.log10(1 / (torch_out - onnx_out).pow(2).mean())
    assert psnr >= 45, psnr


def test_vlm_export_without_the_vlm_is_a_clear_error(tmp_path, tiny_vlm_dir, caplog):
    out = tmp_path / "vlm"
    assert export_main(["--preset", "tiny", "-o", str(out), "--random-weights", "--conditioning", "vlm",
                        "--vlm", str(tiny_vlm_dir)]) == 0  # fmt: skip
    photo = _lr_photo(tmp_path / "c.png")
    code = upscale_main([str(photo), "-o", str(tmp_path / "o"), "--runtime", "onnx", "--engine-dir", str(out),
                         "--quiet"])  # fmt: skip
    assert code == 2 and "VLM-conditioned; pass the Qwen3-VL folder (--vlm DIR)" in caplog.text


@pytest.mark.parametrize("mode", MODES)
def test_bench_runs_in_each_mode(mode, mode_flags, tmp_path):
    out = tmp_path / "bench.json"
    code = bench_main(["--preset", "tiny", "--device", "cpu", "--res", "64", "--runtimes", "eager", "--repeats", "1",
                       "--warmup", "1", "-o", str(out), *mode_flags[mode]])  # fmt: skip
    assert code == 0
    stages = {r["stage"]: r for r in json.loads(out.read_text())["results"]}
    assert stages["conditioning"]["status"] == "ok" and stages["one_pass"]["status"] == "ok"


def test_official_checkpoint_folder_loads_by_detection(tiny_vlm_dir, randomise_lora, tmp_path):
    """A folder in the official release layout (state_dict.pth, projector.pth) is recognised by --checkpoint; the
    base weights come from the preset (the same seed here, as from --pretrained for a real backbone)."""
    spec = ModelSpec(preset="tiny", conditioning="vlm", vlm=tiny_vlm_dir, lora_rank=8, seed=1, random_weights=True)
    model = build_generator(spec)
    randomise_lora(model.transformer, seed=2)
    torch.nn.init.normal_(model.conditioning.adapter[2].weight, std=0.05)
    save_official_checkpoint(model, tmp_path / "StrSR-tiny")
    loaded = SuperResolver.from_preset("tiny", conditioning="vlm", vlm=tiny_vlm_dir,
                                       checkpoint=tmp_path / "StrSR-tiny", device="cpu", seed=1,
                                       lora_mode="unmerged")  # bit for bit: the adapters as trained  # fmt: skip
    lr = _lr_tensor()
    reference = SuperResolver(model, tile=1024).upscale_tensor(lr)
    assert torch.equal(loaded.upscale_tensor(lr), reference)
    with pytest.raises(ValueError, match="trained with VLM conditioning"):
        build_generator(ModelSpec(preset="tiny", checkpoint=tmp_path / "StrSR-tiny"))


def test_convert_cli_round_trips_the_official_layout(tiny_vlm_dir, randomise_lora, tmp_path, caplog):
    from strsr.model.convert_cli import main as convert_main

    spec = ModelSpec(preset="tiny", conditioning="vlm", vlm=tiny_vlm_dir, lora_rank=8, seed=1, random_weights=True)
    model = build_generator(spec)
    randomise_lora(model.transformer, seed=3)
    official = save_official_checkpoint(model, tmp_path / "official")
    converted = tmp_path / "strsr.safetensors"
    width = ["--vlm", str(tiny_vlm_dir)]
    assert convert_main(["to-strsr", str(official), "-o", str(converted), "--preset", "tiny", *width]) == 0
    assert convert_main(["to-official", str(converted), "-o", str(tmp_path / "back"), "--preset", "tiny", *width]) == 0
    for name in ("state_dict.pth", "projector.pth"):
        before = torch.load(official / name, weights_only=True)
        after = torch.load(tmp_path / "back" / name, weights_only=True)
        assert list(before) == list(after) and all(torch.equal(before[k], after[k]) for k in before)
    loaded = build_generator(spec.replace(random_weights=False, lora_rank=None, checkpoint=converted))
    lr = _lr_tensor()
    assert torch.equal(SuperResolver(loaded).upscale_tensor(lr), SuperResolver(model).upscale_tensor(lr))
    (official / "projector.pth").write_bytes(b"not a pickle")
    code = convert_main(["to-strsr", str(official), "-o", str(tmp_path / "x.safetensors"), "--preset", "tiny", *width])
    assert code == 2
    assert "projector.pth" in caplog.text and not (tmp_path / "x.safetensors").exists()


@pytest.mark.parametrize("mode", MODES)
def test_eval_lr_upscales_and_scores_in_each_mode(mode, mode_flags, tmp_path, capsys):
    """strsr-eval --lr takes the same model options as strsr-upscale, every conditioning mode included, and its
    outputs are strsr-upscale's."""
    from strsr.evaluation.cli import main as eval_main

    lr, gt, out = tmp_path / "lr", tmp_path / "gt", tmp_path / "out"
    lr.mkdir(), gt.mkdir()
    _lr_photo(lr / "c.png", 16)
    Image.fromarray(data.coffee()[100:164, 200:264]).save(gt / "c.png")
    flags = [*mode_flags[mode], *(["--random-weights"] if mode != "none" else [])]
    code = eval_main(["--lr", str(lr), "--pred", str(out), "--gt", str(gt), "--metrics", "psnr", "--quiet", *flags])
    assert code == 0
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[:2] == ["out", "1"] and 5 < float(row[2]) < 60
    assert upscale_main([str(lr / "c.png"), "-o", str(tmp_path / "upscaled"), "--quiet", *flags]) == 0
    assert Image.open(out / "c.png").tobytes() == Image.open(tmp_path / "upscaled" / "c.png").tobytes()

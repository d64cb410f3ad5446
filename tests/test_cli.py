"""`strsr-upscale` end to end on real photos: every input format, every bad input, rank splitting."""

import logging
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from skimage import data

from strsr.inference.cli import main, sample_image
from strsr.inference.pipeline import SuperResolver
from strsr.io.images import load_image
from strsr.io.outputs import plan_upscale_outputs
from strsr.model.build import build_generator
from strsr.model.checkpoint import save_generator
from strsr.spec import ModelSpec


def _run(args, caplog):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="strsr"):
        code = main([*args, "--quiet"])
    return code, caplog.text


def _photo(h=24, w=32):
    return data.astronaut()[120 : 120 + h, 200 : 200 + w]


def test_sample_run_uses_the_bundled_tiny_model(tmp_path, caplog):
    code, log = _run(["--sample", "-o", str(tmp_path)], caplog)
    assert code == 0
    out = Image.open(tmp_path / "chelsea.png")
    assert out.size == (384, 256) and out.mode == "RGB"
    assert "weights are random" not in log
    resolver = SuperResolver.from_preset("tiny")  # the same run in process: the file holds exactly its samples
    assert np.array_equal(np.asarray(out), resolver.upscale_image(load_image(sample_image())).samples)
    code, log = _run(["--sample", "-o", str(tmp_path / "random"), "--random-weights"], caplog)
    assert code == 0 and "weights are random" in log


@pytest.fixture
def inputs(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rgb = _photo()
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(rgb).save(folder / "photo.jpg", quality=95)
    Image.fromarray(rgb).save(folder / "photo.webp", lossless=True)
    Image.fromarray(rgb).save(folder / "photo.tif")
    Image.fromarray(data.camera()[:24, :32]).save(folder / "gray.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])).save(folder / "rgba.png")
    Image.fromarray(rgb).quantize(16).save(folder / "palette.png")
    Image.fromarray((data.camera()[:24, :32].astype(np.uint16) * 257)).save(folder / "gray16.png")
    rotated = Image.fromarray(rgb)
    exif = rotated.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    rotated.save(folder / "exif.jpg", exif=exif.tobytes(), quality=95)
    return folder


def test_every_input_format(inputs, tmp_path, caplog):
    """--ext auto (the default) keeps each input's format; --ext png writes PNG for all, telling same stems apart by
    their source format."""
    out = tmp_path / "out"
    before = {p.name: p.read_bytes() for p in inputs.iterdir()}
    code, log = _run([str(inputs), "-o", str(out)], caplog)
    assert code == 0, log
    expected = {"rgb.png": ("RGB", (128, 96)), "gray.png": ("L", (128, 96)), "rgba.png": ("RGBA", (128, 96)),
                "palette.png": ("RGB", (128, 96)), "gray16.png": ("I;16", (128, 96)), "exif.jpg": ("RGB", (96, 128)),
                "photo.jpg": ("RGB", (128, 96)), "photo.webp": ("RGB", (128, 96)),
                "photo.tif": ("RGB", (128, 96))}  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    for name, (mode, size) in expected.items():
        image = Image.open(out / name)
        assert (image.mode, image.size) == (mode, size), name
        assert image.format == {"png": "PNG", "jpg": "JPEG", "webp": "WEBP", "tif": "TIFF"}[name.split(".")[1]]
    assert {p.name: p.read_bytes() for p in inputs.iterdir()} == before  # inputs untouched
    assert "shares its output name" not in log
    # the lossless formats hold exactly the samples of the PNG written from the same pixels
    for name in ("photo.webp", "photo.tif"):
        assert np.array_equal(np.asarray(Image.open(out / name)), np.asarray(Image.open(out / "rgb.png"))), name

    code, log = _run([str(inputs), "-o", str(tmp_path / "png"), "--ext", "png"], caplog)
    assert code == 0
    for name in ("photo-jpg", "photo-webp", "photo-tif"):  # same stem: the source format tells them apart
        assert Image.open(tmp_path / "png" / f"{name}.png").size == (128, 96)
    assert "photo.jpg shares its output name with another input: writing" in log
    assert np.array_equal(np.asarray(Image.open(tmp_path / "png" / "photo-webp.png")),
                          np.asarray(Image.open(out / "photo.webp")))  # fmt: skip


def test_two_inputs_never_share_an_output(tmp_path, caplog):
    for folder, seed in (("d1", 0), ("d2", 1)):
        (tmp_path / folder).mkdir()
        Image.fromarray(_photo()[:, ::-1] if seed else _photo()).save(tmp_path / folder / "a.png")
    out = tmp_path / "out"
    code, log = _run([str(tmp_path / "d1" / "a.png"), str(tmp_path / "d2" / "a.png"), "-o", str(out)], caplog)
    assert code == 0
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert written == ["d1/a.png", "d2/a.png"] and "writing d2/a.png" in log
    a, b = (np.asarray(Image.open(out / d / "a.png")) for d in ("d1", "d2"))
    assert np.abs(a.astype(int) - b[:, ::-1]).mean() < 8  # each output is its own input's (the mirror image)


def test_bad_images_are_reported_and_the_rest_complete(tmp_path, caplog):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(_photo()).save(folder / "good.png")
    (folder / "empty.png").write_bytes(b"")
    good = (folder / "good.png").read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "notes.jpg").write_text("not an image")
    out = tmp_path / "out"
    code, log = _run([str(folder), "-o", str(out)], caplog)
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]  # no partial or temporary files
    for name in ("empty.png", "truncated.png", "notes.jpg"):
        lines = [line for line in log.splitlines() if name in line]
        assert len(lines) == 1 and "ERROR" in lines[0], (name, log)
    assert "3 of 4 images failed" in log


def test_folder_without_images_and_missing_input(tmp_path, caplog):
    (tmp_path / "empty").mkdir()
    code, log = _run([str(tmp_path / "empty"), "-o", str(tmp_path / "out")], caplog)
    assert code == 2 and "folder has no images" in log
    code, log = _run([str(tmp_path / "nope.png"), "-o", str(tmp_path / "out")], caplog)
    assert code == 1 and "nope.png" in log


def test_unwritable_output_is_one_clear_error(tmp_path, caplog):
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, log = _run([str(tmp_path / "a.png"), "-o", str(blocker / "out")], caplog)
    assert code == 2 and "cannot create output folder" in log


def test_output_never_overwrites_an_input(tmp_path, caplog):
    Image.fromarray(_photo()).save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    code, log = _run([str(tmp_path / "a.png"), "-o", str(tmp_path)], caplog)
    assert code == 2 and "would overwrite an input" in log
    assert (tmp_path / "a.png").read_bytes() == before


def test_checkpoint_for_another_preset_is_one_clear_error(tmp_path, caplog):
    model = build_generator(ModelSpec(preset="tiny-zimage", random_weights=True))
    ckpt = save_generator(model, tmp_path / "z.safetensors")
    code, log = _run(["--sample", "-o", str(tmp_path / "out"), "--checkpoint", str(ckpt)], caplog)
    assert code == 2
    assert "z.safetensors: checkpoint is for preset 'tiny-zimage', the model has 'tiny'" in log
    assert not (tmp_path / "out" / "chelsea.png").exists()


def test_ranks_split_the_inputs(inputs, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    out = tmp_path / "out"
    code, _ = _run([str(inputs), "-o", str(out)], caplog)
    assert code == 0
    every = [dst.name for _, dst in plan_upscale_outputs([inputs], out)]
    assert len(every) == len(list(inputs.iterdir())) == 9
    assert sorted(p.name for p in out.iterdir()) == sorted(every[1::3])


@pytest.mark.slow
def test_torchrun_two_processes_share_the_work(inputs, tmp_path):
    torchrun = shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun not on PATH")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    result = subprocess.run(
        [torchrun, "--nproc_per_node=2", "--no-python", sys.executable, "-m", "strsr.inference.cli", str(inputs), "-o",
         str(out), "--quiet"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list(out.iterdir())) == len(list(inputs.iterdir()))


def test_the_bundled_model_beats_bicubic_on_a_held_out_photo(tmp_path, caplog):
    """A coffee crop (never trained on), downscaled x4 with an antialiased bicubic: the CLI's output is closer to it
    than plain bicubic upscaling."""
    import torch
    import torch.nn.functional as F

    hr = torch.from_numpy(data.coffee()[96:224, 192:320].copy()).permute(2, 0, 1)[None].float() / 255
    lr = F.interpolate(hr, scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
    Image.fromarray((lr[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(tmp_path / "c.png")
    code, _ = _run([str(tmp_path / "c.png"), "-o", str(tmp_path / "out")], caplog)
    assert code == 0
    out = torch.from_numpy(np.asarray(Image.open(tmp_path / "out" / "c.png")).copy()).permute(2, 0, 1)[None] / 255
    lr8 = torch.from_numpy(np.asarray(Image.open(tmp_path / "c.png")).copy()).permute(2, 0, 1)[None] / 255
    bicubic = F.interpolate(lr8, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)

    def psnr(x):
        return float(10 * torch.log10(1 / (x.double() - hr.double()).square().mean()))

    assert psnr(out) > psnr(bicubic), (psnr(out), psnr(bicubic))


def test_sample_is_bundled():
    assert sample_image().is_file()

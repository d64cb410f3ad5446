"""strsr-upscale's Real-ESRGAN conventions on real photos: -s/--outscale (x4, then an OpenCV resize), --suffix,
--ext, skip-existing and --overwrite, --manifest, and log lines that go through the progress bars' writer."""

import json
import logging
import os
import subprocess
import sys

import cv2
import numpy as np
import png
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from skimage import data

import strsr.inference.pipeline as pipeline_module
from strsr.inference.cli import main
from strsr.inference.pipeline import SuperResolver
from strsr.inference.upscale import OutputOptions, output_size, resize_samples, upscale_loaded
from strsr.io.images import load_image


def _run(args, caplog, quiet=True):
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="strsr"):
        code = main([*args, "--quiet"] if quiet else args)
    return code, caplog.text


def _read_png16(path):
    """(H, W, C) uint16 samples of a 16-bit PNG, read with pypng (not strsr's reader)."""
    width, height, rows, info = png.Reader(filename=str(path)).asDirect()
    assert info["bitdepth"] == 16
    return np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(height, width, info["planes"])


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """An 8-bit RGBA crop of a photo (alpha a gradient) and a 16-bit RGB one (an antialiased downscale of another
    photo, so the low byte carries real detail)."""
    folder = tmp_path_factory.mktemp("photos")
    rgb = data.astronaut()[140:164, 200:230]
    alpha = np.tile(np.linspace(0, 255, 30).astype(np.uint8), (24, 1))
    Image.fromarray(np.dstack([rgb, alpha])).save(folder / "rgba.png")
    hr = torch.from_numpy(data.coffee()[100:196, 200:320].copy()).permute(2, 0, 1)[None].double() / 255
    lr = F.interpolate(hr, size=(21, 29), mode="bicubic", antialias=True).clamp(0, 1)[0].permute(1, 2, 0)
    samples = np.rint(lr.numpy() * 65535).astype(np.uint16)  # (21, 29, 3)
    with open(folder / "deep.png", "wb") as f:
        png.Writer(29, 21, greyscale=False, bitdepth=16).write(f, samples.reshape(21, -1))
    return folder


def test_outscale_is_the_x4_output_resized_by_opencv(photos, tmp_path, caplog):
    """-s 2.5: Real-ESRGAN's size int(side * 2.5) and exactly cv2.resize(x4 output, INTER_LANCZOS4), in 8-bit RGBA and
    in 16-bit colour; --resize-filter area is cv2's INTER_AREA."""
    assert _run([str(photos), "-o", str(tmp_path / "x4")], caplog)[0] == 0
    assert _run([str(photos), "-o", str(tmp_path / "s"), "-s", "2.5"], caplog)[0] == 0
    assert _run([str(photos), "-o", str(tmp_path / "area"), "-s", "1", "--resize-filter", "area"], caplog)[0] == 0

    x4 = np.asarray(Image.open(tmp_path / "x4" / "rgba.png"))
    assert x4.shape == (96, 120, 4)
    out = np.asarray(Image.open(tmp_path / "s" / "rgba.png"))
    assert out.shape == (int(24 * 2.5), int(30 * 2.5), 4) == (60, 75, 4)
    assert np.array_equal(out, cv2.resize(x4, (75, 60), interpolation=cv2.INTER_LANCZOS4))
    # an independent Lanczos (Pillow's, a = 3 with its support widened when downscaling) agrees to within a level
    pil = np.dstack([np.asarray(Image.fromarray(x4[..., c]).resize((75, 60), Image.Resampling.LANCZOS))
                     for c in range(4)])  # fmt: skip
    assert np.abs(out.astype(int) - pil).mean() < 1.0
    area = np.asarray(Image.open(tmp_path / "area" / "rgba.png"))
    assert np.array_equal(area, cv2.resize(x4, (30, 24), interpolation=cv2.INTER_AREA))

    deep4 = _read_png16(tmp_path / "x4" / "deep.png")
    deep = _read_png16(tmp_path / "s" / "deep.png")
    assert deep4.shape == (84, 116, 3) and deep.shape == (int(21 * 2.5), int(29 * 2.5), 3) == (52, 72, 3)
    assert np.array_equal(deep, cv2.resize(deep4, (72, 52), interpolation=cv2.INTER_LANCZOS4))
    assert len(np.unique(deep.astype(np.uint32) % 257)) > 1  # real 16-bit samples, not 8-bit ones times 257


def test_suffix_and_ext(photos, tmp_path, caplog):
    """--suffix goes before the extension as `_SUFFIX` (Real-ESRGAN's naming); --ext jpg drops alpha with a warning
    and writes 16-bit input as 8-bit; --ext webp keeps alpha."""
    code, log = _run([str(photos), "-o", str(tmp_path / "j"), "--suffix", "out", "--ext", "jpg"], caplog)
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "j").iterdir()) == ["deep_out.jpg", "rgba_out.jpg"]
    assert "rgba.png: JPEG cannot store alpha; alpha dropped" in log
    jpg = Image.open(tmp_path / "j" / "deep_out.jpg")
    assert (jpg.format, jpg.mode, jpg.size) == ("JPEG", "RGB", (116, 84))
    assert _run([str(photos), "-o", str(tmp_path / "p")], caplog)[0] == 0
    deep = _read_png16(tmp_path / "p" / "deep.png") / 257.0
    assert np.abs(np.asarray(jpg, float) - deep).mean() < 3  # the same image, within JPEG quality 95's error

    assert _run([str(photos / "rgba.png"), "-o", str(tmp_path / "w"), "--ext", "webp"], caplog)[0] == 0
    webp = Image.open(tmp_path / "w" / "rgba.webp")
    assert (webp.format, webp.mode) == ("WEBP", "RGBA")
    assert np.array_equal(np.asarray(webp), np.asarray(Image.open(tmp_path / "p" / "rgba.png")))  # lossless


def test_existing_outputs_are_skipped_and_overwrite_redoes_them(photos, tmp_path, caplog, monkeypatch):
    source = photos / "rgba.png"
    out = tmp_path / "out"
    assert _run([str(source), "-o", str(out)], caplog)[0] == 0
    first = (out / "rgba.png").read_bytes()
    Image.new("RGB", (3, 3)).save(out / "rgba.png")  # a stale output
    stale = (out / "rgba.png").read_bytes()

    def no_model(*args, **kwargs):
        raise AssertionError("nothing to do: no model should be built")

    with monkeypatch.context() as m:
        m.setattr(SuperResolver, "from_spec", no_model)
        code, log = _run([str(source), "-o", str(out)], caplog)
    assert code == 0 and "rgba.png exists, skipped (--overwrite redoes it)" in log
    assert (out / "rgba.png").read_bytes() == stale
    code, log = _run([str(source), "-o", str(out), "--overwrite"], caplog)
    assert code == 0 and (out / "rgba.png").read_bytes() == first


def test_an_output_over_an_input_is_refused_even_with_overwrite(tmp_path, caplog):
    Image.fromarray(data.astronaut()[:16, :16]).save(tmp_path / "a.png")
    before = (tmp_path / "a.png").read_bytes()
    code, log = _run([str(tmp_path / "a.png"), "-o", str(tmp_path), "--overwrite"], caplog)
    assert code == 2 and "would overwrite an input" in log
    assert (tmp_path / "a.png").read_bytes() == before


def test_outputs_of_an_earlier_run_in_the_input_folder_are_not_inputs(tmp_path, caplog):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(data.astronaut()[:16, :20]).save(folder / "a.png")
    assert _run([str(folder), "-o", str(folder), "--suffix", "x4"], caplog)[0] == 0
    code, log = _run([str(folder), "-o", str(folder), "--suffix", "x4"], caplog)
    assert code == 0
    assert "a_x4.png is the output of" in log and "a_x4.png exists, skipped" in log
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a_x4.png"]


def test_manifest_records_inputs_outputs_settings_and_seconds(photos, tmp_path, caplog):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("rgba.png", "deep.png"):
        (folder / name).write_bytes((photos / name).read_bytes())
    (folder / "broken.png").write_bytes((photos / "rgba.png").read_bytes()[:200])
    out = tmp_path / "out"
    out.mkdir()
    Image.new("RGB", (2, 2)).save(out / "deep.png")  # exists: skipped
    manifest = tmp_path / "runs" / "m.json"
    code, _ = _run([str(folder), "-o", str(out), "-s", "3", "--suffix", "", "--manifest", str(manifest)], caplog)
    assert code == 1  # broken.png failed
    record = json.loads(manifest.read_text())
    assert record["format"] == "strsr.run.v1" and record["tool"] == "strsr-upscale"
    assert record["settings"]["output"] == {"outscale": 3.0, "ext": "auto", "suffix": "", "rounding": "floor",
                                            "resize_filter": "lanczos"}  # fmt: skip
    assert record["settings"]["model"]["preset"] == "tiny" and record["settings"]["overlap"] == 64
    by_input = {os.path.basename(r["input"]): r for r in record["images"]}
    assert {k: r["status"] for k, r in by_input.items()} == {"broken.png": "failed", "deep.png": "skipped",
                                                             "rgba.png": "written"}  # fmt: skip
    written = by_input["rgba.png"]
    assert written["output"] == str(out / "rgba.png") and written["seconds"] > 0
    assert written["size"] == list(Image.open(out / "rgba.png").size) == [90, 72]
    assert "broken.png" in by_input["broken.png"]["reason"] and by_input["deep.png"]["reason"] == "output exists"
    assert record["counts"] == {"written": 1, "skipped": 1, "failed": 1}
    assert record["seconds"] >= written["seconds"]
    assert os.listdir(manifest.parent) == ["m.json"]  # written atomically: no temporary file left


def test_log_lines_go_through_the_progress_bar_writer(photos, tmp_path):
    """With bars on (no --quiet), each log line starts a line of its own: tqdm clears the bar (a carriage return)
    before writing it, instead of the message being glued after the bar's text."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
    result = subprocess.run([sys.executable, "-m", "strsr.inference.cli", str(photos), "-o", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "images:" in result.stderr  # the bar was drawn
    lines = [line for line in result.stderr.split("\n") if " -> " in line]
    assert len(lines) == 2
    for line in lines:
        assert line.split("\r")[-1].startswith("strsr-upscale: "), repr(line)


def test_output_size_is_real_esrgans():
    assert output_size(37, 21, 4) == (148, 84)
    for scale in (0.5, 1.5, 2.5, 3.3, 7.0):  # int(w * s), truncated as inference_realesrgan.py does
        assert output_size(37, 21, scale) == (int(37 * scale), int(21 * scale))
    assert output_size(1, 1, 0.1) == (1, 1)
    for options, flag in ((dict(outscale=0), "--outscale"), (dict(outscale=float("nan")), "--outscale"),
                          (dict(ext="bmp"), "--ext"), (dict(resize_filter="sinc"), "--resize-filter"),
                          (dict(suffix="a/b"), "--suffix"), (dict(rounding="up"), "--rounding")):  # fmt: skip
        with pytest.raises(ValueError, match=flag):
            OutputOptions(**options)


def test_resize_samples_keeps_the_channel_axis_and_dtype():
    rng = np.random.default_rng(0)
    for dtype in (np.uint8, np.uint16):
        for channels in (1, 2, 3, 4):
            samples = rng.integers(0, np.iinfo(dtype).max, (12, 10, channels), dtype=dtype)
            out = resize_samples(samples, 15, 18)
            assert out.shape == (18, 15, channels) and out.dtype == dtype
            for c in range(channels):  # each channel alone: alpha is resized like the colour
                want = cv2.resize(np.ascontiguousarray(samples[..., c]), (15, 18), interpolation=cv2.INTER_LANCZOS4)
                assert np.array_equal(out[..., c], want)
    assert resize_samples(samples, 10, 12) is samples


def test_upscale_loaded_checks_the_output_size_before_any_model_work(photos, monkeypatch):
    resolver = SuperResolver.from_preset("tiny")
    image = load_image(photos / "rgba.png")
    calls = []
    monkeypatch.setattr(resolver, "upscale_image", lambda *a, **k: calls.append(1))
    monkeypatch.setattr(pipeline_module, "MAX_OUTPUT_PIXELS", 150 * 150)
    with pytest.raises(ValueError, match=r"at outscale 7 is 210x168 = 35,280"):
        upscale_loaded(resolver, image, OutputOptions(outscale=7), ".png")  # x4 (120x96) fits, x7 does not
    assert calls == []

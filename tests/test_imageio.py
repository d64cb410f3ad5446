"""Tests for strsr.io.images: round trips, modes, 16-bit, EXIF orientation, bad inputs, find_images.

References are numpy arrays of what was written (or of what a format is specified to hold), never
the loader's own output. Photos are small crops of skimage.data so the file runs in a few seconds.
"""

import logging
import os
import struct
import sys
import zlib

import numpy as np
import pytest
import skimage.data
import tifffile
import torch
from PIL import Image

from strsr.io.images import (
    IMAGE_SUFFIXES,
    ImageError,
    ImageReadError,
    ImageWriteError,
    LoadedImage,
    find_images,
    image_from_pil,
    load_image,
    save_image,
)

H, W = 48, 64
EXIF_ORIENTATION = 0x0112

# torchvision 0.29 deprecates decode_png (used for 16-bit colour PNG); the module notes the migration.
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """(48, 64, 3) uint8 crop of the astronaut photo (face and suit edges: real texture)."""
    return np.ascontiguousarray(skimage.data.astronaut()[100 : 100 + H, 200 : 200 + W])


@pytest.fixture(scope="module")
def gray() -> np.ndarray:
    """(48, 64) uint8 crop of the cameraman photo."""
    return np.ascontiguousarray(skimage.data.camera()[150 : 150 + H, 200 : 200 + W])


@pytest.fixture(scope="module")
def ramp16() -> np.ndarray:
    """(48, 64, 4) uint16 with values that are distinct in the low byte, including the extremes."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 65536, size=(H, W, 4), dtype=np.uint16)
    a[0, :4, 0] = [0, 1000, 40000, 65535]
    return a


def as_tensor(a: np.ndarray, peak: float = 255.0) -> torch.Tensor:
    """(H, W, C) integer array -> (C, H, W) float32 in [0, 1]."""
    return torch.from_numpy(a.transpose(2, 0, 1).astype(np.float32) / np.float32(peak))


def as_array(t: torch.Tensor, peak: float = 255.0) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> (H, W, C) int64 samples at the given peak value."""
    return np.rint(t.numpy().astype(np.float64) * peak).astype(np.int64).transpose(1, 2, 0)


def write_png16(path, a: np.ndarray, exif: bytes | None = None) -> None:
    """Write (H, W, C) uint16 as a 16-bit PNG straight from the spec, since no installed library does
    (colour type 0 grey, 4 grey+alpha, 2 RGB, 6 RGBA; filter 0 on every row; optional eXIf chunk)."""
    height, width, channels = a.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    rows = b"".join(b"\x00" + a[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    body = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0))
    if exif is not None:
        body += chunk(b"eXIf", exif.removeprefix(b"Exif\x00\x00"))
    body += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)


def exif_with_orientation(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    return exif


def upright(a: np.ndarray, orientation: int) -> np.ndarray:
    """What a viewer shows for stored pixels ``a`` with an EXIF orientation, per the EXIF 2.3 table."""
    mirrored = a[:, ::-1]
    return {
        1: a,
        2: mirrored,
        3: np.rot90(a, 2),
        4: a[::-1],
        5: np.rot90(mirrored, 1),  # mirror, then 90 degrees counter-clockwise
        6: np.rot90(a, -1),  # 90 degrees clockwise
        7: np.rot90(mirrored, -1),  # mirror, then 90 degrees clockwise
        8: np.rot90(a, 1),  # 90 degrees counter-clockwise
    }[orientation]


# ----------------------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("suffix", [".png", ".webp", ".tif", ".tiff"])
def test_lossless_formats_round_trip_exactly(tmp_path, photo, suffix):
    # Reading: a file Pillow wrote from the photo loads as photo / 255, bit for bit.
    written = tmp_path / f"ref{suffix}"
    Image.fromarray(photo).save(written, **({"lossless": True} if suffix == ".webp" else {}))
    loaded = load_image(written)
    assert (loaded.height, loaded.width, loaded.bit_depth, loaded.grayscale) == (H, W, 8, False)
    assert loaded.alpha is None and loaded.source == str(written)
    assert loaded.rgb.dtype == torch.float32 and loaded.rgb.shape == (3, H, W)
    assert torch.equal(loaded.rgb, as_tensor(photo))

    # Writing: save_image of photo / 255 decodes (by Pillow) to the photo exactly.
    out = tmp_path / f"out{suffix.upper()}"  # the format comes from the suffix, case-insensitively
    save_image(out, as_tensor(photo))
    np.testing.assert_array_equal(np.asarray(Image.open(out).convert("RGB")), photo)


def test_jpeg_round_trip_within_tolerance(tmp_path, photo):
    out = tmp_path / "out.jpg"
    save_image(out, as_tensor(photo))
    # Quality 95 without chroma subsampling: mean error about 2/255 on this textured crop.
    error = np.abs(np.asarray(Image.open(out)).astype(np.float64) - photo)
    assert error.mean() < 4.0, error.mean()
    loaded = load_image(out)
    assert loaded.bit_depth == 8 and not loaded.grayscale
    assert np.abs(as_array(loaded.rgb) - photo).mean() < 4.0


def test_save_rounds_to_nearest_on_request_and_clamps(tmp_path):
    rgb = torch.tensor([[-0.5, 0.0, 0.4 / 255, 0.6 / 255, 1.0, 7.0]]).expand(3, 1, 6)
    save_image(tmp_path / "c.png", rgb.clone(), rounding="nearest")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "c.png"))[0, :, 0], [0, 0, 0, 1, 255, 255])
    with pytest.raises(ValueError, match="unknown rounding"):
        save_image(tmp_path / "d.png", rgb.clone(), rounding="up")


def test_save_floors_by_default_as_torchvision_to_pil_image(tmp_path):
    from torchvision import transforms

    rgb = torch.rand(3, 17, 23, generator=torch.Generator().manual_seed(0))
    rgb[:, 0, :6] = torch.tensor([-0.5, 0.0, 0.4 / 255, 0.6 / 255, 1.0, 7.0])
    save_image(tmp_path / "c.png", rgb.clone())
    want = np.asarray(transforms.ToPILImage()(rgb.clamp(0, 1)))  # what the official scripts save
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "c.png")), want)
    assert (want[0, :6, 0] == [0, 0, 0, 0, 255, 255]).all()


def test_grayscale_png_loads_as_equal_channels(tmp_path, gray):
    Image.fromarray(gray).save(tmp_path / "g.png")  # mode L
    loaded = load_image(tmp_path / "g.png")
    assert loaded.grayscale and loaded.bit_depth == 8 and loaded.alpha is None
    reference = torch.from_numpy(gray.astype(np.float32) / np.float32(255))
    for channel in loaded.rgb:
        assert torch.equal(channel, reference)


def test_bilevel_image_loads_as_grayscale(tmp_path, gray):
    bits = gray > 128
    Image.fromarray(bits).save(tmp_path / "b.png")  # mode 1
    loaded = load_image(tmp_path / "b.png")
    assert loaded.grayscale
    np.testing.assert_array_equal(loaded.rgb.numpy(), np.broadcast_to(bits.astype(np.float32), (3, H, W)))


def test_rgba_alpha_preserved_exactly(tmp_path, photo):
    alpha = np.tile(np.linspace(0, 255, W).round().astype(np.uint8), (H, 1))
    Image.fromarray(np.dstack([photo, alpha])).save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    assert torch.equal(loaded.rgb, as_tensor(photo))
    assert torch.equal(loaded.alpha, as_tensor(alpha[..., None]))

    for suffix in (".png", ".webp", ".tif"):
        out = tmp_path / f"out{suffix}"
        save_image(out, loaded.rgb, loaded.alpha)
        written = np.asarray(Image.open(out))
        np.testing.assert_array_equal(written, np.dstack([photo, alpha]), err_msg=suffix)


@pytest.mark.parametrize("transparent_index", [None, 3])
def test_palette_image(tmp_path, photo, transparent_index):
    palette_image = Image.fromarray(photo).quantize(colors=32)
    indices = np.asarray(palette_image)
    palette = np.array(palette_image.getpalette()[: 32 * 3], dtype=np.uint8).reshape(32, 3)
    extra = {} if transparent_index is None else {"transparency": transparent_index}
    palette_image.save(tmp_path / "p.png", **extra)

    loaded = load_image(tmp_path / "p.png")
    assert not loaded.grayscale  # palette images count as colour
    assert torch.equal(loaded.rgb, as_tensor(palette[indices]))
    if transparent_index is None:
        assert loaded.alpha is None
    else:
        assert (indices == transparent_index).any()
        expected_alpha = np.where(indices == transparent_index, 0, 255).astype(np.uint8)
        assert torch.equal(loaded.alpha, as_tensor(expected_alpha[..., None]))


def test_animated_gif_loads_first_frame(tmp_path, photo):
    frames = [Image.fromarray(photo).quantize(colors=16), Image.fromarray(photo[::-1]).quantize(colors=16)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    indices, palette = np.asarray(frames[0]), np.array(frames[0].getpalette()[:48], dtype=np.uint8).reshape(16, 3)
    assert torch.equal(load_image(tmp_path / "anim.gif").rgb, as_tensor(palette[indices]))


def test_cmyk_jpeg_converts_to_rgb(tmp_path, photo):
    Image.fromarray(photo).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    loaded = load_image(tmp_path / "cmyk.jpg")
    assert loaded.rgb.shape == (3, H, W) and not loaded.grayscale
    assert np.abs(as_array(loaded.rgb) - photo).mean() < 4.0


def test_image_from_pil_memory_source(photo):
    loaded = image_from_pil(Image.fromarray(photo))
    assert isinstance(loaded, LoadedImage) and loaded.source == "<memory>"
    assert torch.equal(loaded.rgb, as_tensor(photo))


# ----------------------------------------------------------------------------------------------- 16-bit


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16bit_grayscale_loads_exactly(tmp_path, ramp16, suffix):
    values = ramp16[..., 0]
    Image.fromarray(values).save(tmp_path / f"g16{suffix}")  # mode I;16
    loaded = load_image(tmp_path / f"g16{suffix}")
    assert loaded.bit_depth == 16 and loaded.grayscale
    np.testing.assert_array_equal(as_array(loaded.rgb, 65535), np.repeat(values[..., None], 3, axis=2))
    # 1000 and 40000 land within float32 rounding of v / 65535, far below one 16-bit step.
    np.testing.assert_allclose(loaded.rgb[0, 0, :4].numpy(), np.array([0, 1000, 40000, 65535]) / 65535, atol=1e-7)


@pytest.mark.parametrize("channels", [3, 4, 2])
def test_16bit_colour_png_loads_at_full_precision(tmp_path, ramp16, channels):
    a = ramp16[..., :channels]
    write_png16(tmp_path / "c16.png", a)
    loaded = load_image(tmp_path / "c16.png")
    assert loaded.bit_depth == 16 and loaded.grayscale == (channels == 2)
    colour = 1 if channels == 2 else 3
    np.testing.assert_array_equal(as_array(loaded.rgb, 65535), np.broadcast_to(a[..., :colour], (H, W, 3)))
    if channels in (2, 4):
        np.testing.assert_array_equal(as_array(loaded.alpha, 65535)[..., 0], a[..., -1])
    else:
        assert loaded.alpha is None


@pytest.mark.parametrize("channels", [3, 4])
def test_16bit_colour_tiff_loads_at_full_precision(tmp_path, ramp16, channels):
    a = ramp16[..., :channels]
    tifffile.imwrite(tmp_path / "c16.tif", a, photometric="rgb", extrasamples=["unassalpha"] if channels == 4 else None)
    loaded = load_image(tmp_path / "c16.tif")
    assert loaded.bit_depth == 16 and not loaded.grayscale
    np.testing.assert_array_equal(as_array(loaded.rgb, 65535), a[..., :3])
    if channels == 4:
        np.testing.assert_array_equal(as_array(loaded.alpha, 65535)[..., 0], a[..., 3])


def test_16bit_tiff_premultiplied_alpha_is_divided_out(tmp_path, ramp16):
    colour = ramp16[..., :3].astype(np.float64)
    alpha = (ramp16[..., 3:] // 2 + 32768).astype(np.float64)  # opaque enough that division stays precise
    stored = np.dstack([np.rint(colour * alpha / 65535), alpha]).astype(np.uint16)
    tifffile.imwrite(tmp_path / "pm.tif", stored, photometric="rgb", extrasamples=["assocalpha"])
    loaded = load_image(tmp_path / "pm.tif")
    # Rounding the premultiplied value loses up to 0.5 * 65535 / alpha <= 1 level; allow 1.
    assert np.abs(as_array(loaded.rgb, 65535) - colour).max() <= 1
    np.testing.assert_array_equal(as_array(loaded.alpha, 65535), alpha)


def test_16bit_tiff_orientation_from_its_tag(tmp_path, ramp16):
    tifffile.imwrite(tmp_path / "o.tif", ramp16[..., :3], photometric="rgb", extratags=[(274, "H", 1, 6, True)])
    loaded = load_image(tmp_path / "o.tif")
    np.testing.assert_array_equal(as_array(loaded.rgb, 65535), upright(ramp16[..., :3], 6))


def test_16bit_colour_tiff_without_tifffile_reads_8bit_with_warning(tmp_path, ramp16, monkeypatch, caplog):
    tifffile.imwrite(tmp_path / "c16.tif", ramp16[..., :3], photometric="rgb")
    monkeypatch.setitem(sys.modules, "tifffile", None)  # makes `import tifffile` raise ImportError
    with caplog.at_level(logging.WARNING, logger="strsr.io.images"):
        loaded = load_image(tmp_path / "c16.tif")
    assert "reading 8-bit" in caplog.text and loaded.bit_depth == 8
    # Pillow keeps the high byte of each 16-bit sample.
    np.testing.assert_array_equal(as_array(loaded.rgb), ramp16[..., :3] >> 8)


def test_save_16bit_grayscale_png_and_tiff(tmp_path, ramp16):
    rgb = as_tensor(np.repeat(ramp16[..., :1], 3, axis=2), 65535)
    for suffix in (".png", ".tif"):
        out = tmp_path / f"g16{suffix}"
        save_image(out, rgb, bit_depth=16, grayscale=True)
        written = Image.open(out)
        assert written.mode == "I;16", suffix
        np.testing.assert_array_equal(np.asarray(written), ramp16[..., 0], err_msg=suffix)
        assert torch.equal(load_image(out).rgb, rgb)


@pytest.mark.parametrize("channels", [3, 4])
def test_save_16bit_colour_tiff(tmp_path, ramp16, channels):
    rgb, alpha = as_tensor(ramp16[..., :3], 65535), as_tensor(ramp16[..., 3:], 65535) if channels == 4 else None
    save_image(tmp_path / "c16.tiff", rgb, alpha, bit_depth=16)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "c16.tiff"), ramp16[..., :channels])
    reloaded = load_image(tmp_path / "c16.tiff")
    assert reloaded.bit_depth == 16 and torch.equal(reloaded.rgb, rgb)


def test_save_16bit_grey_alpha_tiff_reloads(tmp_path, ramp16):
    # Pillow cannot even open 16-bit grey+alpha TIFF; the loader reads it with tifffile.
    rgb, alpha = as_tensor(np.repeat(ramp16[..., :1], 3, axis=2), 65535), as_tensor(ramp16[..., 1:2], 65535)
    save_image(tmp_path / "ga16.tif", rgb, alpha, bit_depth=16, grayscale=True)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "ga16.tif"), ramp16[..., :2])
    reloaded = load_image(tmp_path / "ga16.tif")
    assert reloaded.grayscale and reloaded.bit_depth == 16
    assert torch.equal(reloaded.rgb, rgb) and torch.equal(reloaded.alpha, alpha)


@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16bit_colour_and_grey_alpha_png_round_trip_exactly(tmp_path, ramp16, channels):
    from strsr.io.images import write_samples

    samples = ramp16[..., :channels] if channels > 2 else ramp16[..., ::3][..., :2]
    write_samples(tmp_path / "c16.png", np.ascontiguousarray(samples))
    reloaded = load_image(tmp_path / "c16.png")  # decoded by libpng (torchvision), not by the writer
    assert reloaded.bit_depth == 16
    planes = reloaded.rgb[:1] if channels == 2 else reloaded.rgb
    if reloaded.alpha is not None:
        planes = torch.cat([planes, reloaded.alpha])
    np.testing.assert_array_equal(as_array(planes, 65535), samples)
    rgb = as_tensor(ramp16[..., :3], 65535)
    save_image(tmp_path / "f16.png", rgb, bit_depth=16)  # the float path: floor at 16 bits
    want = np.floor(rgb.permute(1, 2, 0).numpy() * np.float32(65535))
    np.testing.assert_array_equal(as_array(load_image(tmp_path / "f16.png").rgb, 65535), want)


def test_grayscale_save_writes_one_channel(tmp_path, photo, gray):
    save_image(tmp_path / "same.png", as_tensor(np.dstack([gray] * 3)), grayscale=True)
    written = Image.open(tmp_path / "same.png")
    assert written.mode == "L"
    np.testing.assert_array_equal(np.asarray(written), gray)

    save_image(tmp_path / "luma.png", as_tensor(photo), grayscale=True)
    luma = photo.astype(np.float64) @ np.array([0.299, 0.587, 0.114])  # BT.601
    written = np.asarray(Image.open(tmp_path / "luma.png")).astype(np.int64)
    assert written.ndim == 2
    assert np.abs(written - np.rint(luma)).max() <= 1  # ties may round either way after float32 input

    loaded = load_image(tmp_path / "luma.png")
    assert loaded.grayscale


# ----------------------------------------------------------------------------------------------- EXIF orientation


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_8bit_png(tmp_path, photo, orientation):
    path = tmp_path / "o.png"
    Image.fromarray(photo).save(path, exif=exif_with_orientation(orientation))
    before = (path.read_bytes(), os.stat(path).st_mtime_ns)
    loaded = load_image(path)
    assert torch.equal(loaded.rgb, as_tensor(np.ascontiguousarray(upright(photo, orientation))))
    assert (loaded.height, loaded.width) == ((W, H) if orientation >= 5 else (H, W))
    assert (path.read_bytes(), os.stat(path).st_mtime_ns) == before  # the input is never rewritten


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_16bit_png(tmp_path, ramp16, orientation):
    write_png16(tmp_path / "o16.png", ramp16[..., :3], exif=exif_with_orientation(orientation).tobytes())
    loaded = load_image(tmp_path / "o16.png")
    np.testing.assert_array_equal(as_array(loaded.rgb, 65535), upright(ramp16[..., :3], orientation))


@pytest.mark.parametrize("orientation", [6, 8])
def test_exif_orientation_jpeg(tmp_path, photo, orientation):
    Image.fromarray(photo).save(tmp_path / "o.jpg", quality=95, exif=exif_with_orientation(orientation))
    loaded = load_image(tmp_path / "o.jpg")
    assert (loaded.height, loaded.width) == (W, H)
    assert np.abs(as_array(loaded.rgb) - upright(photo, orientation)).mean() < 4.0


# ----------------------------------------------------------------------------------------------- bad inputs


def _write_truncated_png(path, photo):
    Image.fromarray(photo).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "make, reason",
    [
        (lambda p, photo: p.write_bytes(b""), "empty file"),
        (lambda p, photo: p.write_text("hello, not a picture\n"), "not a readable image"),
        (_write_truncated_png, "truncated or corrupt"),
        (lambda p, photo: None, "no such file"),
        (lambda p, photo: p.mkdir(), "is a folder"),
    ],
    ids=["empty", "text", "truncated", "missing", "folder"],
)
def test_load_bad_inputs(tmp_path, photo, make, reason):
    path = tmp_path / "broken.png"
    make(path, photo)
    with pytest.raises(ImageReadError) as info:
        load_image(path)
    message = str(info.value)
    assert "broken.png" in message and reason in message, message
    assert "\n" not in message and isinstance(info.value, ValueError)


def test_zero_size_image_rejected():
    with pytest.raises(ImageReadError, match="<memory>: image has zero width or height"):
        image_from_pil(Image.new("RGB", (0, 5)))


def test_save_jpeg_with_alpha_rejected(tmp_path, photo):
    rgb = as_tensor(photo)
    with pytest.raises(ImageWriteError, match=r"out\.jpg: JPEG cannot store alpha"):
        save_image(tmp_path / "out.jpg", rgb, torch.ones(1, H, W))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "name, kwargs, reason",
    [
        ("out.bmp", {}, "unsupported suffix"),
        ("out.jpg", {"bit_depth": 16}, "JPEG cannot store 16-bit"),
        ("out.png", {"bit_depth": 12}, "bit_depth must be 8 or 16"),
    ],
)
def test_save_rejects_unsupported_requests(tmp_path, photo, name, kwargs, reason):
    with pytest.raises(ImageWriteError) as info:
        save_image(tmp_path / name, as_tensor(photo), **kwargs)
    assert name in str(info.value) and reason in str(info.value)


def test_save_rejects_bad_tensors(tmp_path):
    with pytest.raises(ImageWriteError, match=r"x\.png: rgb must be a \(3, H, W\) tensor"):
        save_image(tmp_path / "x.png", torch.zeros(4, 8, 8))
    with pytest.raises(ImageWriteError, match=r"x\.png: image has NaN"):
        save_image(tmp_path / "x.png", torch.full((3, 8, 8), float("nan")))
    assert list(tmp_path.iterdir()) == []


def test_save_into_missing_folder(tmp_path, photo):
    target = tmp_path / "nope" / "out.png"
    with pytest.raises(ImageWriteError) as info:
        save_image(target, as_tensor(photo))
    assert "out.png" in str(info.value) and "does not exist" in str(info.value)
    assert not target.parent.exists()  # the CLI creates output folders, not save_image


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores directory permissions")
def test_save_into_read_only_folder(tmp_path, photo):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ImageWriteError) as info:
            save_image(folder / "out.png", as_tensor(photo))
        assert "out.png" in str(info.value) and "Permission denied" in str(info.value)
        assert list(folder.iterdir()) == []
    finally:
        folder.chmod(0o700)


def test_failed_replace_leaves_no_file_and_keeps_old_one(tmp_path, photo, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous result")

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(ImageWriteError) as info:
        save_image(target, as_tensor(photo))
    assert "out.png" in str(info.value) and "Permission denied" in str(info.value)
    assert target.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # the temporary file was removed


def test_successful_save_leaves_no_temporary_file(tmp_path, photo):
    save_image(tmp_path / "out.webp", as_tensor(photo))
    assert [p.name for p in tmp_path.iterdir()] == ["out.webp"]


def test_errors_share_a_base_class():
    assert issubclass(ImageReadError, ImageError) and issubclass(ImageWriteError, ImageError)
    assert issubclass(ImageError, ValueError)
    assert IMAGE_SUFFIXES == {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff"}


# ----------------------------------------------------------------------------------------------- find_images


@pytest.fixture
def tree(tmp_path):
    """A folder with images at several depths, hidden entries, and a non-image."""
    root = tmp_path / "in"
    for rel in ["b.png", "a.JPG", "sub/c.webp", "sub/deeper/e.TIFF", "sub/.hidden.png", ".cache/d.png", "notes.txt"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x")
    return root


def test_find_images_recurses_sorted_skipping_hidden(tree):
    expected = [tree / "a.JPG", tree / "b.png", tree / "sub/c.webp", tree / "sub/deeper/e.TIFF"]
    assert find_images([tree]) == expected
    assert find_images([str(tree)]) == expected


def test_find_images_keeps_files_and_order_and_drops_duplicates(tree, monkeypatch):
    monkeypatch.chdir(tree)
    found = find_images(["b.png", tree, "notes.txt", "./b.png", "sub/.hidden.png"])
    # Explicit files are kept whatever their suffix or name; b.png appears once, where first named.
    assert [p.resolve() for p in found] == [
        tree / "b.png",
        tree / "a.JPG",
        tree / "sub/c.webp",
        tree / "sub/deeper/e.TIFF",
        tree / "notes.txt",
        tree / "sub/.hidden.png",
    ]


def test_find_images_errors(tree):
    with pytest.raises(ImageReadError, match=r"missing\.png: no such file or folder"):
        find_images([tree / "missing.png"])
    docs = tree / "docs"
    docs.mkdir()
    (docs / "readme.txt").write_text("no pictures here")
    (docs / ".thumb.png").write_bytes(b"x")  # hidden, so it does not count
    with pytest.raises(ImageReadError) as info:
        find_images([tree / "sub", docs])
    assert "docs: folder has no images (.png, .jpg" in str(info.value)

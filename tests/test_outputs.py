"""Output naming: one output per input, told apart by source format or folder, never over an input."""

import pytest
from PIL import Image

from strsr.io.outputs import plan_outputs


def _touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (2, 2)).save(path)
    return path


def _png(relative):
    return relative.with_suffix(".png")


def _names(pairs, out):
    return [str(dst.relative_to(out)) for _, dst in pairs]


def test_distinct_names_are_kept_and_folders_keep_their_layout(tmp_path):
    a = _touch(tmp_path / "in" / "a.jpg")
    _touch(tmp_path / "in" / "sub" / "b.png")
    out = tmp_path / "out"
    assert _names(plan_outputs([a], out, _png), out) == ["a.png"]
    assert _names(plan_outputs([tmp_path / "in"], out, _png), out) == ["a.png", "sub/b.png"]


def test_same_name_in_two_folders_keeps_the_folders(tmp_path, caplog):
    a, b = _touch(tmp_path / "x" / "d1" / "a.png"), _touch(tmp_path / "x" / "d2" / "a.png")
    out = tmp_path / "out"
    pairs = plan_outputs([a, b], out, _png)
    assert [src for src, _ in pairs] == [a, b]
    assert _names(pairs, out) == ["d1/a.png", "d2/a.png"]
    c = _touch(tmp_path / "y" / "d1" / "a.png")  # the same last folder: one level more
    assert _names(plan_outputs([a, c], out, _png), out) == ["x/d1/a.png", "y/d1/a.png"]


def test_same_stem_in_one_folder_is_told_apart_by_format(tmp_path):
    a, b = _touch(tmp_path / "a.png"), _touch(tmp_path / "a.jpg")
    _touch(tmp_path / "c.webp")
    out = tmp_path / "out"
    assert _names(plan_outputs([a, b], out, _png), out) == ["a-png.png", "a-jpg.png"]
    assert _names(plan_outputs([tmp_path], out, _png), out) == ["a-jpg.png", "a-png.png", "c.png"]


def test_two_folders_with_the_same_layout(tmp_path):
    for root in ("left", "right"):
        _touch(tmp_path / root / "shots" / "p.png")
        _touch(tmp_path / root / "shots" / "p.jpg")
    out = tmp_path / "out"
    names = _names(plan_outputs([tmp_path / "left", tmp_path / "right"], out, _png), out)
    assert len(set(names)) == 4
    assert names == ["left/shots/p-jpg.png", "left/shots/p-png.png", "right/shots/p-jpg.png", "right/shots/p-png.png"]


def test_the_same_file_twice_is_done_once(tmp_path):
    a = _touch(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert _names(plan_outputs([a, tmp_path / "in", a], out, _png), out) == ["a.png"]


def test_an_output_over_an_input_is_refused(tmp_path):
    a = _touch(tmp_path / "a.png")
    with pytest.raises(ValueError, match="would overwrite an input"):
        plan_outputs([a], tmp_path, _png)


def _upscale_names(inputs, out, **kwargs):
    from strsr.io.outputs import plan_upscale_outputs

    return _names(plan_upscale_outputs(inputs, out, **kwargs), out)


def test_upscale_names_follow_real_esrgan(tmp_path):
    """<stem>[_<suffix>].<ext>: ext auto keeps each input's format (so a.png and a.jpg do not clash); one forced
    format tells them apart by source format, never as a.jpg.png."""
    a, b = _touch(tmp_path / "in" / "a.png"), _touch(tmp_path / "in" / "a.jpg")
    _touch(tmp_path / "in" / "sub" / "c.TIFF")
    out = tmp_path / "out"
    assert _upscale_names([a, b], out) == ["a.png", "a.jpg"]
    assert _upscale_names([tmp_path / "in"], out, suffix="out") == ["a_out.jpg", "a_out.png", "sub/c_out.TIFF"]
    assert _upscale_names([a, b], out, ext="png") == ["a-png.png", "a-jpg.png"]
    assert _upscale_names([a, b], out, ext="webp", suffix="x2") == ["a-png_x2.webp", "a-jpg_x2.webp"]
    assert _upscale_names([a, b], out, ext="tif") == ["a-png.tif", "a-jpg.tif"]


def test_auto_keeps_a_format_only_where_the_file_is_in_it(tmp_path):
    fake = tmp_path / "fake.jpg"
    Image.new("RGBA", (2, 2)).save(fake, format="PNG")  # a PNG with alpha named .jpg: JPEG could not hold it
    bmp = tmp_path / "b.bmp"
    Image.new("RGB", (2, 2)).save(bmp)  # readable, but not a format strsr writes
    broken = tmp_path / "broken.webp"
    broken.write_bytes(b"not an image")  # unreadable: keeps its suffix, loading reports it
    out = tmp_path / "out"
    assert _upscale_names([fake, bmp, broken], out) == ["fake.png", "b.png", "broken.webp"]


def test_bad_ext_and_suffix_are_refused(tmp_path):
    a = _touch(tmp_path / "a.png")
    with pytest.raises(ValueError, match="--ext 'bmp'"):
        _upscale_names([a], tmp_path / "out", ext="bmp")
    with pytest.raises(ValueError, match="--suffix"):
        _upscale_names([a], tmp_path / "out", suffix="../x")
    with pytest.raises(ValueError, match="would overwrite an input"):
        _upscale_names([a], tmp_path)

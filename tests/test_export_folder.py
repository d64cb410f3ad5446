"""An export folder is hostile input: names that leave it, files that were truncated, swapped or replaced, and
malformed manifests all end in one clear line, never a traceback or a wrong result."""

import json
import logging
import os
import shutil

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage import data

from strsr.export.cli import main as export_main
from strsr.inference.cli import main as upscale_main
from strsr.inference.manifest import ManifestError, check_manifest, file_record, inside, is_current
from strsr.inference.onnx_runtime import OnnxGenerator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    assert export_main(["--preset", "tiny", "-o", str(out)]) == 0
    return out


@pytest.fixture
def export(pristine, tmp_path):
    """A fresh copy of the tiny export to break."""
    copy = tmp_path / "export"
    shutil.copytree(pristine, copy)
    return copy


def _edit(folder, change):
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_manifest_records_every_file_with_its_size_and_hash(pristine):
    manifest = json.loads((pristine / "manifest.json").read_text())
    names = {g["file"] for g in manifest["graphs"].values()} | {manifest["conditioning"]["file"]}
    assert set(manifest["files"]) == names
    for name, record in manifest["files"].items():
        assert record == file_record(pristine / name)
    check_manifest(pristine, preset="tiny", verify=True)


@pytest.mark.parametrize("name", ["../outside.onnx", "/etc/passwd", "sub/../../x.onnx", "..\\x.onnx", "C:x.onnx"])
def test_names_that_leave_the_folder_are_refused(export, name):
    _edit(export, lambda m: m["graphs"]["vae_decoder"].update(file=name))
    with pytest.raises(ManifestError, match="must not leave the export folder"):
        check_manifest(export, preset="tiny")
    _edit(export, lambda m: (m["graphs"]["vae_decoder"].update(file="vae_decoder.onnx"),
                             m["conditioning"].update(file=name)))  # fmt: skip
    with pytest.raises(ManifestError, match="conditioning file .* must not leave the export folder"):
        check_manifest(export, preset="tiny")


def test_a_symlink_out_of_the_folder_is_refused(export, tmp_path):
    outside = tmp_path / "elsewhere.onnx"
    shutil.copy(export / "vae_decoder.onnx", outside)
    os.remove(export / "vae_decoder.onnx")
    os.symlink(outside, export / "vae_decoder.onnx")
    with pytest.raises(ManifestError, match="is a link that leaves the export folder"):
        check_manifest(export, preset="tiny")
    (export / "inner").mkdir()
    os.symlink(export / "dit_onestep.onnx", export / "inner" / "dit.onnx")  # a link that stays inside is fine
    assert inside(export, "inner/dit.onnx", "graph") == export / "inner" / "dit.onnx"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m.pop("graphs"), "'graphs' is missing"),
        (lambda m: m.update(graphs=[]), "'graphs' is missing or not an object"),
        (lambda m: m["graphs"].pop("dit_onestep"), "export lacks graphs dit_onestep"),
        (lambda m: m["graphs"]["vae_encoder"].update(file=123), "must be a file name, got 123"),
        (lambda m: m["graphs"].update(vae_encoder="vae_encoder.onnx"), "graph 'vae_encoder' is not an object"),
        (lambda m: m.pop("files"), "no file records"),
        (lambda m: m["files"].pop("dit_onestep.onnx"), "graph 'dit_onestep' 'dit_onestep.onnx' has no size"),
        (lambda m: m.update(conditioning={"mode": "magic"}), "'conditioning' must say its mode"),
        (lambda m: m.update(format="other"), "not a strsr export manifest"),
    ],
)
def test_malformed_manifests_are_one_clear_error(export, change, message):
    _edit(export, change)
    with pytest.raises(ManifestError, match=message):
        check_manifest(export, preset="tiny")


def test_invalid_json_is_one_clear_error(export):
    (export / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        check_manifest(export, preset="tiny")


def test_truncated_and_swapped_graphs_are_refused_and_never_current(export, caplog):
    graph = export / "dit_onestep.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])
    with pytest.raises(ManifestError, match=r"bytes, the manifest says \d+ \(truncated or replaced"):
        check_manifest(export, preset="tiny")
    manifest = json.loads((export / "manifest.json").read_text())
    key = {k: manifest[k] for k in ("format", "preset", "weights_sha256")}
    assert not is_current(export, key)
    with caplog.at_level(logging.INFO, logger="strsr.export"):
        assert export_main(["--preset", "tiny", "-o", str(export)]) == 0  # re-exported, not "current"
    assert "are current" not in caplog.text
    check_manifest(export, preset="tiny", verify=True)
    encoder, decoder = export / "vae_encoder.onnx", export / "vae_decoder.onnx"
    a, b = encoder.read_bytes(), decoder.read_bytes()
    encoder.write_bytes(b)
    decoder.write_bytes(a)
    with pytest.raises(ManifestError, match="truncated or replaced|sha256 differs"):
        check_manifest(export, preset="tiny", verify=True)


def test_same_size_corruption_is_caught_by_verify_and_by_onnx_runtime(export):
    graph = export / "vae_decoder.onnx"
    graph.write_bytes(b"\0" * graph.stat().st_size)
    with pytest.raises(ManifestError, match="sha256 differs"):
        OnnxGenerator(export, "tiny", verify=True)
    with pytest.raises(ManifestError, match="ONNX Runtime cannot load this graph"):
        OnnxGenerator(export, "tiny")


def test_conditioning_of_the_wrong_width_is_refused(export):
    path = export / "condition.safetensors"
    save_file({"condition": torch.zeros(1, 1, 32)}, str(path))
    _edit(export, lambda m: m["files"].update({"condition.safetensors": file_record(path)}))
    with pytest.raises(ManifestError, match=r"conditioning tokens \(1, 1, 32\) do not fit the DiT graph \(1, L, 64\)"):
        OnnxGenerator(export, "tiny")
    path.write_bytes(b"garbage!" * 4)
    _edit(export, lambda m: m["files"].update({"condition.safetensors": file_record(path)}))
    with pytest.raises(ManifestError, match="not a readable safetensors file"):
        OnnxGenerator(export, "tiny")


def test_strsr_upscale_reports_a_broken_export_in_one_line(export, tmp_path, caplog):
    Image.fromarray(data.coffee()[:16, :16]).save(tmp_path / "c.png")
    _edit(export, lambda m: m["graphs"]["vae_decoder"].update(file="../../x.onnx"))
    code = upscale_main([str(tmp_path / "c.png"), "-o", str(tmp_path / "o"), "--runtime", "onnx", "--engine-dir",
                         str(export), "--quiet"])  # fmt: skip
    assert code == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "must not leave the export folder" in errors[0].getMessage()
    assert not (tmp_path / "o" / "c.png").exists()

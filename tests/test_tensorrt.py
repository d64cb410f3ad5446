"""TensorRT engines: the checks that run anywhere (profiles, refusing engines built elsewhere, clear errors without
TensorRT), and an end-to-end build and run where TensorRT and a GPU exist (marked `trt`)."""

import json

import pytest
import torch
from PIL import Image
from skimage import data

from strsr.export.tensorrt import Profile, profiles_for
from strsr.inference.cli import main as upscale_main
from strsr.inference.manifest import ManifestError
from strsr.inference.tensorrt_runtime import check_engine_host
from strsr.spec import ModelSpec

BUILT_ON = {"version": "10.13.0.35", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "engines": {}}


def test_profiles_span_one_to_a_tile_and_keep_fixed_dims():
    graph = {"inputs": {"state": ["batch", 192, "state_height", "state_width"],
                        "condition": ["batch", "condition_tokens", 64]}}  # fmt: skip
    tile = {"state": (1, 192, 64, 64), "condition": (1, 1, 64)}
    profiles = profiles_for(graph, tile, max_batch=4)
    assert profiles["state"] == Profile(min=(1, 192, 1, 1), opt=(1, 192, 64, 64), max=(4, 192, 64, 64))
    assert profiles["condition"] == Profile(min=(1, 1, 64), opt=(1, 1, 64), max=(4, 1, 64))
    static = profiles_for({"inputs": {"state": [1, 48, 16, 16]}}, {"state": (1, 48, 16, 16)}, max_batch=4)
    assert static["state"] == Profile((1, 48, 16, 16), (1, 48, 16, 16), (1, 48, 16, 16))


def test_engines_built_elsewhere_are_refused_with_the_reason(tmp_path):
    here = {"trt_version": "10.13.0.35", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "where": tmp_path}
    check_engine_host(BUILT_ON, **here)  # same TensorRT, same GPU: accepted
    with pytest.raises(ManifestError, match=r"built with TensorRT 10\.13\.0\.35, this is TensorRT 10\.9\.0\.34"):
        check_engine_host(BUILT_ON, **{**here, "trt_version": "10.9.0.34"})
    with pytest.raises(ManifestError, match=r"built for NVIDIA H100 80GB HBM3 \(sm 9\.0\), this GPU is NVIDIA RTX"):
        check_engine_host(BUILT_ON, **{**here, "gpu": "NVIDIA RTX A6000", "compute_capability": "8.6"})
    with pytest.raises(ManifestError, match="no TensorRT engines in this export"):
        check_engine_host(None, **here)


def _has_tensorrt_and_gpu() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return torch.cuda.is_available()


def test_trt_backend_without_tensorrt_is_a_clear_error(tmp_path, caplog):
    if _has_tensorrt_and_gpu():
        pytest.skip("TensorRT and a GPU are present: the error path cannot be reached")
    Image.fromarray(data.coffee()[:32, :32]).save(tmp_path / "c.png")
    code = upscale_main([str(tmp_path / "c.png"), "-o", str(tmp_path / "o"), "--runtime", "trt", "--engine-dir",
                         str(tmp_path), "--quiet"])  # fmt: skip
    assert code == 2
    assert "--backend trt needs" in caplog.text
    assert not (tmp_path / "o" / "c.png").exists()


@pytest.mark.trt
@pytest.mark.slow
def test_trt_engines_match_onnx_runtime_on_a_photo(tmp_path):
    if not _has_tensorrt_and_gpu():
        pytest.skip("needs TensorRT and an NVIDIA GPU")
    from strsr.export.cli import main as export_main
    from strsr.inference.pipeline import SuperResolver

    out = tmp_path / "engines"
    assert export_main(["--preset", "tiny", "-o", str(out), "--trt", "--tile", "256"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["tensorrt"]["engines"]) == {"vae_encoder", "dit_onestep", "vae_decoder"}
    lr = torch.from_numpy(data.coffee()[100:164, 200:264]).permute(2, 0, 1)[None].float() / 255
    spec = ModelSpec(preset="tiny")
    onnx = SuperResolver.from_export(out, spec, tile=256).upscale_tensor(lr)
    for cuda_graph in (False, True):
        trt = SuperResolver.from_export(out, spec, tile=256, runtime="trt", cuda_graph=cuda_graph).upscale_tensor(lr)
        psnr = 10 * torch.log10(1 / (trt.cpu() - onnx).pow(2).mean())
        assert psnr >= 45, (cuda_graph, psnr)

"""strsr-eval: weight-free metrics equal pyiqa's own values, missing weights are named before any download, files
pair by name with a report of what is missing, and the CLI writes the table, CSV and JSON. No network anywhere."""

from __future__ import annotations

import csv
import json
import logging
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data
from skimage.metrics import peak_signal_noise_ratio

from strsr.io.images import load_image, save_image

pyiqa = pytest.importorskip("pyiqa", reason="strsr-eval needs the eval extra (pyiqa)")

from strsr.evaluation.cli import main  # noqa: E402
from strsr.evaluation.grid_artifacts import grid_artifact_score  # noqa: E402
from strsr.evaluation.metrics import MetricSuite  # noqa: E402
from strsr.evaluation.pairing import PairingError, pair_folders  # noqa: E402
from strsr.evaluation.weights import MissingWeightsError, offline_loading, required_files, resolve_weights  # noqa: E402

SIDE = 160  # >= 128 px so the grid score has a window; small so every metric is quick


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path_factory):
    """Empty torch-hub and Hugging Face caches, and every download function replaced by a test failure."""
    import huggingface_hub.constants
    import torch.hub
    from pyiqa.utils import download_util

    hub = tmp_path_factory.mktemp("hub")
    monkeypatch.setattr(torch.hub, "_hub_dir", str(hub))
    monkeypatch.setattr(download_util, "DEFAULT_CACHE_DIR", str(hub / "pyiqa"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path_factory.mktemp("hf")))

    def forbidden(url, *args, **kwargs):
        raise AssertionError(f"network download attempted: {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", forbidden)
    monkeypatch.setattr(download_util, "download_url_to_file", forbidden)
    return hub


def crop(name: str, top: int = 0, left: int = 0) -> torch.Tensor:
    """(3, SIDE, SIDE) float32 in [0, 1] from a scikit-image photo."""
    array = np.asarray(getattr(data, name)())[top:top + SIDE, left:left + SIDE]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 255


def bicubic_x4(hr: torch.Tensor) -> torch.Tensor:
    lr = F.interpolate(hr[None], scale_factor=0.25, mode="bicubic", antialias=True).clamp(0, 1)
    return F.interpolate(lr, scale_factor=4, mode="bicubic").clamp(0, 1)[0]


@pytest.fixture
def folders(tmp_path):
    """gt/ with 3 photos; bicubic/ and noisy/ predictions (noisy lacks `coffee`, has an extra file)."""
    gt, bicubic, noisy = (tmp_path / d for d in ("gt", "bicubic", "noisy"))
    for folder in (gt, bicubic, noisy):
        folder.mkdir()
    gen = torch.Generator().manual_seed(0)
    for name, top, left in (("chelsea", 40, 120), ("coffee", 100, 200), ("astronaut", 0, 150)):
        hr = crop(name, top, left)
        save_image(gt / f"{name}.png", hr)
        save_image(bicubic / f"{name}.png", bicubic_x4(hr))
        if name != "coffee":
            save_image(noisy / f"{name}.png", (hr + 0.03 * torch.randn(hr.shape, generator=gen)).clamp(0, 1))
    save_image(noisy / "extra.png", crop("rocket"))
    return gt, bicubic, noisy


def test_weight_free_metrics_equal_pyiqa_and_the_formula(folders):
    gt_dir, pred_dir, _ = folders
    suite = MetricSuite(["psnr", "ssim", "gmsd", "piqe"], device=torch.device("cpu"))
    suite.build()
    for key, pred_path, gt_path in pair_folders(pred_dir, gt_dir).pairs:
        pred, gt = load_image(pred_path).rgb, load_image(gt_path).rgb
        row = suite.score(pred, gt)
        for name in ("psnr", "ssim", "gmsd"):
            expected = float(pyiqa.create_metric(name, device="cpu")(pred[None], gt[None]))
            assert row[name] == pytest.approx(expected, rel=1e-6), (key, name)
        assert row["piqe"] == pytest.approx(float(pyiqa.create_metric("piqe", device="cpu")(pred[None])), rel=1e-6)
        u8 = lambda x: (x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)  # noqa: E731
        assert row["psnr"] == pytest.approx(peak_signal_noise_ratio(u8(gt), u8(pred)), abs=1e-3)  # RGB, no crop
        assert row["grid16"] == pytest.approx(float(grid_artifact_score(pred)), abs=1e-9)
        assert row["grid16-gt"] == pytest.approx(row["grid16"] - float(grid_artifact_score(gt)), abs=1e-9)


def test_required_file_names_come_from_the_libraries():
    names = {m: [f.name for f in required_files(m)] for m in ("lpips", "dists", "niqe", "maniqa", "musiq",
                                                             "qualiclip", "qalign", "psnr")}  # fmt: skip
    assert names["maniqa"][0] == "ckpt_koniq10k.pt"
    assert names["lpips"] == ["LPIPS_v0.1_alex-df73285e.pth", "alexnet-owt-7be5be79.pth"]
    assert names["dists"] == ["DISTS_weights-f5e65c96.pth", "vgg16-397923af.pth"]
    assert names["niqe"] == ["niqe_modelparameters.mat"]
    assert names["musiq"] == ["musiq_koniq_ckpt-e95806b9.pth"]
    assert names["qualiclip"] == ["QualiCLIP.pth", "RN50.pt"]
    assert names["qalign"] == ["one-align"] and names["psnr"] == []


def test_missing_weights_error_names_file_metric_and_place(no_network, tmp_path):
    with pytest.raises(MissingWeightsError) as err:
        resolve_weights("maniqa", [tmp_path])
    text = str(err.value)
    assert "'maniqa'" in text and "ckpt_koniq10k.pt" in text and "MANIQA KonIQ-10k checkpoint" in text
    assert str(no_network / "pyiqa") in text and "--weights maniqa=" in text and str(tmp_path) in text
    assert "vit_base_patch8_224.augreg2_in21k_ft_in1k.safetensors" in text  # the timm backbone too


def test_cli_stops_before_any_download(folders, caplog, monkeypatch):
    gt, bicubic, _ = folders
    calls = []
    import pyiqa.archs.maniqa_arch as maniqa_arch

    monkeypatch.setattr(maniqa_arch, "load_pretrained_network", lambda *a, **k: calls.append(a))
    with caplog.at_level(logging.ERROR):
        assert main(["--pred", str(bicubic), "--gt", str(gt), "--metrics", "psnr,maniqa,musiq", "--quiet"]) == 2
    assert not calls
    assert "ckpt_koniq10k.pt" in caplog.text and "musiq_koniq_ckpt-e95806b9.pth" in caplog.text
    assert "--skip-unavailable" in caplog.text


def test_user_weights_are_served_and_other_downloads_refused(tmp_path):
    """NIQE built from a parameter file in a --weights-dir folder equals pyiqa's NIQE given that path directly."""
    import scipy.io

    rng = np.random.default_rng(0)
    basis = rng.normal(size=(36, 36))
    params = {"mu_prisparam": rng.normal(size=(1, 36)), "cov_prisparam": basis @ basis.T / 36 + np.eye(36)}
    folder = tmp_path / "weights"
    folder.mkdir()
    scipy.io.savemat(folder / "niqe_modelparameters.mat", params)
    found = resolve_weights("niqe", [folder])
    assert found == {"niqe_modelparameters.mat": folder / "niqe_modelparameters.mat"}
    with offline_loading("niqe", found):
        ours = pyiqa.create_metric("niqe", device="cpu")
    direct = pyiqa.create_metric("niqe", device="cpu", pretrained_model_path=str(folder / "niqe_modelparameters.mat"))
    image = crop("chelsea")[None]
    assert float(ours(image)) == pytest.approx(float(direct(image)), rel=1e-6)
    # a metric strsr has no file table for: its download is refused at once, naming the file
    with pytest.raises(MissingWeightsError, match="brisque_svm_weights.pth"), offline_loading("brisque", {}):
        pyiqa.create_metric("brisque", device="cpu")


def test_hub_downloads_fail_at_once_not_after_retries():
    """hyperiqa's backbone comes from the Hugging Face hub through timm: offline mode fails it without retrying."""
    import time

    suite = MetricSuite(["hyperiqa"], device=torch.device("cpu"))
    start = time.monotonic()
    with pytest.raises(MissingWeightsError, match="'hyperiqa' needs files from the Hugging Face hub"):
        suite.build()
    assert time.monotonic() - start < 10


def test_pairing_by_name_and_its_report(folders, tmp_path):
    gt, _, noisy = folders
    pairing = pair_folders(noisy, gt)
    assert [k for k, _, _ in pairing.pairs] == ["astronaut", "chelsea"]
    assert pairing.gt_only == ("coffee",) and pairing.pred_only == ("extra",) and not pairing.complete
    report = pairing.report(noisy, gt)
    assert f"1 image(s) in {gt} but missing from {noisy}: coffee" in report
    assert f"1 image(s) in {noisy} but not in {gt} (not scored): extra" in report
    save_image(noisy / "chelsea.jpg", crop("chelsea"))
    with pytest.raises(PairingError, match="same name"):
        pair_folders(noisy, gt)
    (tmp_path / "other").mkdir()
    save_image(tmp_path / "other" / "zzz.png", crop("chelsea"))
    with pytest.raises(PairingError, match="no file in"):
        pair_folders(tmp_path / "other", gt)


def test_cli_table_csv_json_for_two_methods(folders, tmp_path, capsys, caplog):
    gt, bicubic, noisy = folders
    out_csv, out_json = tmp_path / "s.csv", tmp_path / "s.json"
    with caplog.at_level(logging.WARNING):
        code = main(["--pred", str(bicubic), "--pred", f"noise={noisy}", "--gt", str(gt), "--metrics", "psnr,ssim",
                     "--csv", str(out_csv), "-o", str(out_json), "--quiet"])  # fmt: skip
    assert code == 0
    assert "missing from" in caplog.text and "coffee" in caplog.text
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["Method", "N", "PSNR↑", "SSIM↑", "grid16↓", "grid16-gt↓"]
    assert table[2].split()[:2] == ["bicubic", "3"] and table[3].split()[:2] == ["noise", "2"]
    rows = list(csv.DictReader(out_csv.open()))
    assert [(r["method"], r["image"]) for r in rows] == [
        ("bicubic", "astronaut"), ("bicubic", "chelsea"), ("bicubic", "coffee"),
        ("noise", "astronaut"), ("noise", "chelsea"), ("bicubic", "mean"), ("noise", "mean")]  # fmt: skip
    psnr = pyiqa.create_metric("psnr", device="cpu")
    for r in rows[:5]:
        folder = bicubic if r["method"] == "bicubic" else noisy
        pred, ref = (load_image(d / f"{r['image']}.png").rgb[None] for d in (folder, gt))
        expected = psnr(pred, ref)
        assert float(r["psnr"]) == pytest.approx(float(expected), rel=1e-6)
    report = json.loads(out_json.read_text())
    assert report["means"]["noise"]["psnr"] == pytest.approx(np.mean([float(r["psnr"]) for r in rows[3:5]]))
    assert [m["name"] for m in report["metrics"]] == ["psnr", "ssim", "grid16", "grid16-gt"]
    assert table[2].split()[2] == f"{report['means']['bicubic']['psnr']:.2f}"


def test_cli_without_gt_runs_only_no_reference_metrics(folders, capsys, caplog):
    _, bicubic, _ = folders
    assert main(["--pred", str(bicubic), "--metrics", "offline", "--quiet"]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header == ["Method", "N", "piqe↓", "grid16↓"]
    with caplog.at_level(logging.ERROR):
        assert main(["--pred", str(bicubic), "--metrics", "psnr"]) == 2
    assert "psnr is a full-reference metric: it needs --gt" in caplog.text
    # the paper's no-reference set, none of whose weights are here: skipped with a warning, grid16 still runs
    assert main(["--pred", str(bicubic), "--skip-unavailable", "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines()[0].split() == ["Method", "N", "grid16↓"]
    assert "skipping niqe" in caplog.text and "skipping qalign" in caplog.text


@pytest.mark.parametrize("argv, message", [
    (["--pred", "/nonexistent"], "--pred /nonexistent: not a folder"),
    (["--pred", ".", "--metrics", "nosuchmetric"], "unknown metric 'nosuchmetric'"),
    (["--pred", ".", "--weights", "maniqa"], "expected METRIC=PATH"),
    (["--pred", "a", "--pred", "b", "--lr", "."], "give exactly one --pred"),
])  # fmt: skip
def test_cli_bad_input_exits_2_with_the_reason(argv, message, caplog):
    with caplog.at_level(logging.ERROR):
        assert main(argv) == 2
    assert message in caplog.text


def test_cli_lr_runs_the_tiny_model_first(tmp_path, capsys):
    gt, lr, out = tmp_path / "gt", tmp_path / "lr", tmp_path / "out"
    hr = crop("chelsea", 40, 120)[:, :128, :128]
    gt.mkdir(), lr.mkdir()
    save_image(gt / "cat.png", hr)
    small = F.interpolate(hr[None], scale_factor=0.25, mode="bicubic", antialias=True)[0].clamp(0, 1)
    save_image(lr / "cat.png", small)
    assert main(["--lr", str(lr), "--pred", str(out), "--gt", str(gt), "--metrics", "psnr", "--quiet"]) == 0
    assert load_image(out / "cat.png").rgb.shape == (3, 128, 128)
    row = capsys.readouterr().out.splitlines()[2].split()
    assert row[:2] == ["out", "1"] and 20 < float(row[2]) < 40 and not math.isnan(float(row[3]))


def test_cli_lr_never_writes_among_its_inputs(tmp_path, caplog):
    lr = tmp_path / "lr"
    lr.mkdir()
    save_image(lr / "cat.jpg", crop("chelsea")[:, :32, :32])
    before = sorted(p.name for p in lr.iterdir())
    for pred in (lr, lr / "sub"):
        caplog.clear()
        with caplog.at_level(logging.ERROR):
            assert main(["--lr", str(lr), "--pred", str(pred), "--metrics", "niqe", "--quiet"]) == 2
        assert "is inside --lr" in caplog.text
    assert sorted(p.name for p in lr.iterdir()) == before


def test_cli_lr_reports_a_bad_image_and_scores_the_rest(tmp_path, caplog, capsys):
    gt, lr, out = tmp_path / "gt", tmp_path / "lr", tmp_path / "out"
    gt.mkdir(), lr.mkdir()
    for name, top in (("a", 0), ("b", 40)):
        hr = crop("chelsea", top, 120)[:, :128, :128]
        save_image(gt / f"{name}.png", hr)
        save_image(lr / f"{name}.png", F.interpolate(hr[None], scale_factor=0.25, mode="bicubic",
                                                      antialias=True)[0].clamp(0, 1))  # fmt: skip
    (lr / "broken.png").write_bytes(b"not a png")
    with caplog.at_level(logging.ERROR):
        code = main(["--lr", str(lr), "--pred", str(out), "--gt", str(gt), "--metrics", "psnr", "--quiet"])
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.png"]
    assert [r.getMessage() for r in caplog.records if "broken.png" in r.getMessage()][0].count("\n") == 0
    assert capsys.readouterr().out.splitlines()[2].split()[:2] == ["out", "2"]


def test_an_image_too_small_for_a_metric_is_reported_not_fatal(tmp_path, caplog, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    gt.mkdir(), pred.mkdir()
    tiny = crop("chelsea")[:, :4, :4]
    save_image(gt / "tiny.png", tiny)
    save_image(pred / "tiny.png", tiny)
    save_image(gt / "big.png", crop("coffee"))
    save_image(pred / "big.png", crop("coffee"))
    with caplog.at_level(logging.ERROR):
        code = main(["--pred", str(pred), "--gt", str(gt), "--metrics", "ssim", "--quiet"])
    assert code == 1 and "tiny.png: not scored" in caplog.text
    assert capsys.readouterr().out.splitlines()[2].split()[:2] == ["pred", "1"]


class _Payload:
    """A pickle that creates a file when unpickled: what a hostile checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused_and_never_unpickled(folders, tmp_path, caplog):
    _, pred, _ = folders
    marker = tmp_path / "pwned"
    weights = tmp_path / "weights"
    weights.mkdir()
    name = required_files("musiq")[0].name
    torch.save({"params": _Payload(marker)}, weights / name)
    with caplog.at_level(logging.ERROR):
        code = main(["--pred", str(pred), "--metrics", "musiq", "--weights-dir", str(weights), "--quiet"])
    assert code == 2 and "refused, loading it would run code from the file" in caplog.text
    assert not marker.exists()
    torch.save({"params": {"w": torch.zeros(2)}}, weights / name)  # plain tensors pass the check
    resolve_weights("musiq", [weights])
    (weights / name).write_bytes(b"\x80\x04garbage")
    with pytest.raises(MissingWeightsError, match="not a readable PyTorch weights file"):
        resolve_weights("musiq", [weights])
    assert not marker.exists()

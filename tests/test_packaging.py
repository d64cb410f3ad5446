"""The wheel holds every subpackage and data file, under the one `strsr` namespace."""

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contains_every_subpackage_and_data_file(tmp_path):
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = tmp_path.glob("strsr-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package, folder in config["package-dir"].items():
        for source in (ROOT / folder).glob("*.py"):
            assert f"{package.replace('.', '/')}/{source.name}" in names, source
    assert "strsr/data/samples/chelsea.png" in names
    assert "strsr/data/weights/strsr-tiny.safetensors" in names
    assert "strsr/train/recipes/tiny.toml" in names
    assert "strsr/bench/references.toml" in names
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top_level == {"strsr"}  # kernels/, export/, train/, bench/ ship only inside the namespace
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in ("strsr-upscale = strsr.inference.cli:main", "strsr-train = strsr.train.cli:main",
                   "strsr-export = strsr.export.cli:main", "strsr-bench = strsr.bench.cli:main",
                   "strsr-convert = strsr.model.convert_cli:main",
                   "strsr-eval = strsr.evaluation.cli:main"):  # fmt: skip
        assert script in scripts


def test_every_mapped_folder_is_a_listed_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert set(config["packages"]) == set(config["package-dir"])
    for folder in config["package-dir"].values():
        assert (ROOT / folder / "__init__.py").is_file()

"""`strsr-app`: its jobs write exactly what strsr-upscale writes and fail with strsr-upscale's messages; the page,
driven in headless Chromium, uploads photos and offers those same files for download.

The browser tests need Debian's `chromium` and `chromium-driver` packages (root: `apt-get install chromium
chromium-driver`) and the `selenium` package (the test extra). .ci/run runs without root and installs neither, so on
CI they skip, saying so; the tests above them cover the app's logic (jobs, settings, messages, the page's handler)
without a browser. The screenshot of the page (`strsr-app.png`) and its timings (`strsr-app-timings.json`) are
written to the browser test's pytest tmp folder and copied to $STRSR_ARTIFACTS when it is set; the path is printed.
"""

import html
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from io import BytesIO

import numpy as np
import pytest
from PIL import Image
from skimage import data

from strsr.app.jobs import RunError, Runner, Settings
from strsr.inference.cli import main as upscale_main
from strsr.inference.cli import sample_image
from strsr.inference.tiling import plan_tiles
from strsr.presets import get_preset
from strsr.spec import ModelSpec

PAGE_TIMEOUT_S = 60  # every wait in the browser tests is bounded by this


def _cli(args, caplog) -> tuple[int, list[str]]:
    """strsr-upscale in process: its exit status and the messages it logged at ERROR."""
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="strsr"):
        code = upscale_main([*args, "--quiet"])
    return code, [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    """One runner for the module's tests: it keeps the tiny model built between them, as the app does."""
    return Runner(ModelSpec(), tmp_path_factory.mktemp("work"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The bundled sample and a second photo, with strsr-upscale's outputs of both (the tiny default, x4)."""
    folder = tmp_path_factory.mktemp("reference")
    second = folder / "in" / "astronaut.png"
    second.parent.mkdir()
    Image.fromarray(data.astronaut()[100:164, 180:276]).save(second)  # 96x64
    assert upscale_main([str(sample_image()), str(second), "-o", str(folder / "cli"), "--quiet"]) == 0
    return {"inputs": [sample_image(), second], "cli": folder / "cli"}


@pytest.fixture
def photos(tmp_path):
    """Small photos of the kinds whose output rules differ: RGB, RGBA (alpha kept or dropped), 16-bit grey."""
    folder = tmp_path / "in"
    folder.mkdir()
    rgb = data.astronaut()[120:144, 200:232]
    Image.fromarray(rgb).save(folder / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.linspace(0, 255, 24 * 32).reshape(24, 32).astype(np.uint8)])).save(
        folder / "rgba.png")  # fmt: skip
    Image.fromarray(data.camera()[:24, :32].astype(np.uint16) * 257).save(folder / "gray16.png")
    return folder


@pytest.mark.parametrize("ext, outscale", [("auto", 4.0), ("jpg", 4.0), ("auto", 2.5)])
def test_app_writes_what_the_cli_writes(runner, photos, tmp_path, caplog, ext, outscale):
    paths = sorted(photos.iterdir())
    outcome = runner.run(paths, Settings(ext=ext, outscale=outscale))
    assert outcome.errors == [] and outcome.warnings == []
    code, errors = _cli([*map(str, paths), "-o", str(tmp_path / "cli"), "--ext", ext, "-s", str(outscale)], caplog)
    assert code == 0 and errors == []
    assert [r.name for r in outcome.results] == [p.name for p in paths]
    size = (int(32 * outscale), int(24 * outscale))  # Real-ESRGAN's int(side * outscale)
    for result in outcome.results:
        expected = tmp_path / "cli" / result.output.name
        assert result.output.name == (result.name if ext == "auto" else result.name.replace(".png", ".jpg"))
        assert result.output.read_bytes() == expected.read_bytes(), result.name  # the same file, byte for byte
        with Image.open(result.output) as out, Image.open(result.before) as before, Image.open(result.after) as after:
            assert out.size == before.size == after.size == size
    with Image.open(next(r.output for r in outcome.results if r.name == "rgba.png")) as rgba:
        assert rgba.mode == ("RGB" if ext == "jpg" else "RGBA")  # JPEG drops alpha, as strsr-upscale does
    with Image.open(next(r.output for r in outcome.results if r.name == "gray16.png")) as gray:
        assert gray.mode == ("L" if ext == "jpg" else "I;16")  # 16-bit grey stays 16-bit in PNG


def test_app_on_the_bundled_sample_equals_the_cli_and_reports_progress(runner, reference):
    steps = []
    outcome = runner.run([sample_image()], Settings(), lambda fraction, text: steps.append((fraction, text)))
    (result,) = outcome.results
    theirs = Image.open(reference["cli"] / "chelsea.png")
    with Image.open(result.output) as ours:
        assert ours.size == (384, 256)
        assert np.array_equal(np.asarray(ours), np.asarray(theirs))
    # the slider's "after" is the output itself (8-bit RGB here), its "before" plain bicubic of the input
    with Image.open(result.after) as after, Image.open(result.before) as before, Image.open(sample_image()) as lr:
        assert np.array_equal(np.asarray(after), np.asarray(theirs))
        assert np.array_equal(np.asarray(before), np.asarray(lr.convert("RGB").resize((384, 256), Image.BICUBIC)))
    # the tiny preset's default tile plan over the 384x256 output, one step per tile
    n = len(plan_tiles(256, 384, get_preset("tiny").default_tile, 64))
    assert steps == [(0.0, "loading the model"), *[(pytest.approx(k / n), f"chelsea.png: tile {k}/{n}")
                     for k in range(n + 1)], (1.0, "done")]  # fmt: skip


def test_progress_runs_over_files_and_tiles(runner, photos):
    steps = []
    paths = [photos / "rgb.png", photos / "rgba.png"]
    runner.run(paths, Settings(tile=96), lambda fraction, text: steps.append((fraction, text)))
    # 128x96 outputs in 96-px tiles overlapping by 64 px: more than one tile each, reported as done/total per file
    tiles = [text for _, text in steps if "tile" in text]
    total = int(tiles[0].rsplit("/", 1)[1])
    assert total > 1
    assert tiles == [f"{p.name}: tile {k}/{total}" for p in paths for k in range(total + 1)]
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert fractions[1 + total] == pytest.approx(0.5)  # the first file's last tile is half of the run


def test_bad_files_fail_with_the_cli_messages_and_the_rest_go_on(runner, photos, tmp_path, caplog, monkeypatch):
    (photos / "bad.png").write_text("not an image")
    (photos / "empty.jpg").write_bytes(b"")
    monkeypatch.chdir(photos)  # strsr-upscale names a file as it was given: here by its bare name, as the app does
    names = ["bad.png", "empty.jpg", "rgb.png"]
    code, cli_errors = _cli([*names, "-o", str(tmp_path / "cli")], caplog)
    assert code == 1
    uploads = tmp_path / "uploads"  # the server keeps uploads in folders of its own
    uploads.mkdir()
    for name in names:
        shutil.copy(photos / name, uploads / name)
    outcome = runner.run([uploads / n for n in names], Settings())
    assert outcome.errors == cli_errors[:2] and len(outcome.errors) == 2
    assert outcome.errors[0] == "bad.png: not a readable image (cannot identify image file)"
    assert [r.name for r in outcome.results] == ["rgb.png"]


def test_bad_settings_fail_with_the_cli_messages(photos, tmp_path, caplog):
    runner = Runner(ModelSpec(), tmp_path / "work")
    missing = tmp_path / "missing.safetensors"
    code, cli_errors = _cli([str(photos / "rgb.png"), "-o", str(tmp_path / "cli"), "--checkpoint", str(missing)],
                            caplog)  # fmt: skip
    assert code == 2
    with pytest.raises(RunError) as err:
        runner.run([photos / "rgb.png"], Settings(checkpoint=str(missing)))
    assert [str(err.value)] == cli_errors == [f"{missing}: checkpoint file not found"]
    code, cli_errors = _cli([str(photos / "rgb.png"), "-o", str(tmp_path / "cli"), "--tile", "100"], caplog)
    with pytest.raises(RunError) as err:
        runner.run([photos / "rgb.png"], Settings(tile=100))
    assert [str(err.value)] == cli_errors and cli_errors[0].startswith("tile size 100 must be a positive multiple")
    with pytest.raises(RunError, match=r"^--preset 'huge': known presets are tiny"):
        runner.run([photos / "rgb.png"], Settings(preset="huge"))
    with pytest.raises(RunError, match="^no input"):
        runner.run([], Settings())
    with pytest.raises(RunError, match=r"^--outscale -1\.0: must be a positive number$"):
        runner.run([photos / "rgb.png"], Settings(outscale=-1))


def test_strsr_app_refuses_bad_options_before_serving(tmp_path, caplog):
    from strsr.app.cli import main as app_main

    missing = tmp_path / "missing.safetensors"
    with caplog.at_level(logging.INFO, logger="strsr"):
        assert app_main(["--checkpoint", str(missing), "--port", "1"]) == 2  # port 1: it would fail to serve
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == [
        f"{missing}: checkpoint file not found"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_:
        app_main(["-s", "0"])
    assert exit_.value.code == 2


def test_the_page_maps_errors_to_gradio_errors(runner, photos):
    gr = pytest.importorskip("gradio")
    from strsr.app.ui import build_app

    app = build_app(runner, Settings())
    upscale = next(f.fn for f in app.fns.values() if f.name == "upscale")
    settings = ["tiny", "preset default", 4.0, "lanczos", "auto", 0, 0, "", "", "", ""]
    with pytest.raises(gr.Error) as err:
        upscale([], *settings)
    assert err.value.message == "no input: upload one or more images"
    (photos / "bad.png").write_text("not an image")
    with pytest.raises(gr.Error) as err:  # all failed: one error, its line strsr-upscale's
        upscale([str(photos / "bad.png")], *settings)
    assert err.value.message == "bad.png: not a readable image (cannot identify image file)"
    (photos / "<b>.png").write_text("not an image")  # shown as named, not as markup
    with pytest.raises(gr.Error) as err:
        upscale([str(photos / "<b>.png"), str(photos / "bad.png")], *settings)
    assert err.value.message == "&lt;b&gt;.png: not a readable image (cannot identify image file)<br>" \
                                "bad.png: not a readable image (cannot identify image file)"  # fmt: skip
    assert html.unescape(err.value.message.split("<br>")[0]).startswith("<b>.png: ")
    with pytest.warns(UserWarning, match="^bad.png: not a readable image"):  # gr.Warning outside a request
        pair, shown, files, log, previews = upscale([str(photos / "bad.png"), str(photos / "rgb.png")], *settings)
    assert [os.path.basename(f) for f in files] == ["rgb.png"] and os.path.basename(os.path.dirname(files[0])) == "out"
    assert pair == previews["rgb.png"] and shown["value"] == "rgb.png" and shown["choices"] == ["rgb.png"]
    assert log.splitlines()[0].startswith("rgb.png -> rgb.png (128x96, ")
    assert log.splitlines()[1] == "bad.png: not a readable image (cannot identify image file)"


def test_help_imports_neither_torch_nor_gradio():
    probe = ("import sys, runpy; sys.argv = ['strsr-app', '--help']\n"
             "try:\n    runpy.run_module('strsr.app.cli', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print('HEAVY', [m for m in ('torch', 'gradio', 'diffusers') if m in sys.modules])")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "usage: strsr-app" in out.stdout and "HEAVY []" in out.stdout, out.stdout[-500:] + out.stderr[-500:]


# ------------------------------------------------------------------------------------------ in a real browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser():
    """Headless Debian chromium through its chromedriver (given by path: Selenium Manager downloads nothing)."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the test extra)")
    missing = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not found: the browser tests need Debian's chromium and chromium-driver "
                    "(root: apt-get install chromium chromium-driver); .ci/run installs them where it runs as root, "
                    "elsewhere these tests skip")  # fmt: skip
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1080", "--no-first-run", "--disable-extensions"):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        driver.set_page_load_timeout(PAGE_TIMEOUT_S)
        driver.set_script_timeout(PAGE_TIMEOUT_S)
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def server(runner, tmp_path_factory):
    """The app on a free localhost port, its tiny default built before the page is served as strsr-app does, and
    gradio's upload cache in a pytest folder; closed after the module's browser tests."""
    pytest.importorskip("gradio")
    from strsr.app.ui import build_app, launch

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
        runner.resolver(Settings())
        app = build_app(runner, Settings())
        port = _free_port()
        start = time.perf_counter()
        launch(app, "127.0.0.1", port, block=False, work_dir=runner.work_dir)
        url = f"http://127.0.0.1:{port}/"
        try:
            with urllib.request.urlopen(url, timeout=PAGE_TIMEOUT_S) as response:  # launch returns once it answers
                assert response.status == 200
            yield {"url": url, "launch_s": time.perf_counter() - start}
        finally:
            app.close()


def _open_page(browser, url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, PAGE_TIMEOUT_S)
    browser.get(url)
    return wait, wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#inputs input[type=file]"))


def _upload(browser, wait, upload, paths):
    """Choose `paths` in the file input and wait until the server holds each: gradio then shows a download link
    named after it (the name's stem and extension are separate spans, so the text is no use)."""
    from selenium.webdriver.common.by import By

    upload.send_keys("\n".join(map(str, paths)))
    names = sorted(os.path.basename(p) for p in paths)
    wait.until(lambda d: sorted(a.get_attribute("download") for a in d.find_elements(
        By.CSS_SELECTOR, "#inputs a[download]")) == names)  # fmt: skip


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=PAGE_TIMEOUT_S) as response:
        return response.read()


def test_the_page_upscales_uploads_to_the_cli_files(browser, server, reference, tmp_path):
    from selenium.webdriver.common.by import By

    start = time.perf_counter()
    wait, upload = _open_page(browser, server["url"])
    loaded = time.perf_counter()
    _upload(browser, wait, upload, reference["inputs"])
    uploaded = time.perf_counter()
    browser.find_element(By.ID, "run").click()
    links = wait.until(lambda d: (lambda a: a if len(a) == 2 else None)(
        d.find_elements(By.CSS_SELECTOR, "#results a[download]")))  # fmt: skip
    done = time.perf_counter()
    slider = wait.until(lambda d: d.execute_script(
        "const s = [...document.querySelectorAll('#slider img')];"
        "return s.length == 2 && s.every(i => i.complete && i.naturalWidth > 0) ?"
        "  s.map(i => [i.src, i.naturalWidth, i.naturalHeight]) : null;"))  # fmt: skip
    log = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#status textarea").get_attribute("value"))

    screenshot = tmp_path / "strsr-app.png"
    browser.save_screenshot(str(screenshot))
    timings = {"launch_s": server["launch_s"], "page_load_s": loaded - start, "upload_s": uploaded - loaded,
               "click_to_result_s": done - uploaded, "files": [p.name for p in reference["inputs"]]}  # fmt: skip
    (tmp_path / "strsr-app-timings.json").write_text(json.dumps(timings, indent=1))
    kept = [tmp_path]
    if os.environ.get("STRSR_ARTIFACTS"):
        os.makedirs(os.environ["STRSR_ARTIFACTS"], exist_ok=True)
        for name in ("strsr-app.png", "strsr-app-timings.json"):
            shutil.copy(tmp_path / name, os.environ["STRSR_ARTIFACTS"])
        kept.append(os.environ["STRSR_ARTIFACTS"])
    print(f"strsr-app screenshot and timings in {' and '.join(map(str, kept))}: {timings}")

    # each offered file is strsr-upscale's, byte for byte, served over loopback by this server
    assert sorted(a.get_attribute("download") for a in links) == ["astronaut.png", "chelsea.png"]
    for link in links:
        assert link.get_attribute("href").startswith(server["url"])
        cli_file = reference["cli"] / link.get_attribute("download")
        assert _fetch(link.get_attribute("href")) == cli_file.read_bytes(), cli_file.name
    with Image.open(reference["cli"] / "chelsea.png") as cli_output:
        assert cli_output.size == (384, 256)
        # the slider shows the first file: bicubic before, strsr's output after, both at the output's size
        (before_src, *before_size), (after_src, *after_size) = slider
        assert before_size == after_size == [384, 256]
        with Image.open(BytesIO(_fetch(after_src))) as after, Image.open(sample_image()) as lr:
            assert np.array_equal(np.asarray(after), np.asarray(cli_output))
            with Image.open(BytesIO(_fetch(before_src))) as before:
                assert np.array_equal(np.asarray(before), np.asarray(lr.convert("RGB").resize((384, 256),
                                                                                              Image.BICUBIC)))
    assert log.splitlines()[0].startswith("chelsea.png -> chelsea.png (384x256, ")
    assert log.splitlines()[1].startswith("astronaut.png -> astronaut.png (384x256, ")
    assert screenshot.stat().st_size > 0


def test_the_page_shows_the_cli_message_for_a_bad_file(browser, server, tmp_path):
    from selenium.webdriver.common.by import By

    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    wait, upload = _open_page(browser, server["url"])
    _upload(browser, wait, upload, [bad])
    browser.find_element(By.ID, "run").click()

    from selenium.common.exceptions import WebDriverException

    def rendered_toasts(driver):  # the toast's text is filled in after its box appears (and may be re-rendered)
        try:
            toasts = driver.find_elements(By.CSS_SELECTOR, "[data-testid=toast-body]")
            found = [(t.get_attribute("class").split()[1],
                      t.find_element(By.CSS_SELECTOR, "[data-testid=toast-text]").text) for t in toasts]  # fmt: skip
        except WebDriverException:
            return False
        return found if found and all(text for _, text in found) else False

    toasts = wait.until(rendered_toasts)
    # one error toast, strsr-upscale's line for the file (no warning repeating it)
    assert toasts == [("error", "bad.png: not a readable image (cannot identify image file)")]
    assert browser.find_elements(By.CSS_SELECTOR, "#results a[download]") == []

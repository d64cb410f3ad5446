"""`strsr-app`: serve the web UI on this machine (http://127.0.0.1:7860 by default).

    strsr-app                                                  # the bundled tiny model
    strsr-app --preset flux2-klein-4b --pretrained ~/models/FLUX.2-klein-base-4B --vlm ~/models/Qwen3-VL-4B-Instruct \
        --checkpoint strsr-flux.safetensors                    # the page's defaults; each can be changed there

The model options are strsr-upscale's; the default model is built before the page is served, so a bad option fails
here with strsr-upscale's message. Needs the `app` extra (`pip install 'strsr[app]'`).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import tempfile
from pathlib import Path

from strsr.inference.upscale import RESIZE_FILTERS, OutputOptions
from strsr.io.formats import EXTENSIONS
from strsr.spec import ROUNDING_MODES, HelpFormatter, ModelSpec

log = logging.getLogger("strsr")


def build_parser() -> argparse.ArgumentParser:
    """The parser, built without importing torch or gradio (so --help is instant)."""
    p = argparse.ArgumentParser(prog="strsr-app", description="web UI for x4 one-step DiT super-resolution (StrSR)",
                                formatter_class=HelpFormatter)  # fmt: skip
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on; 0.0.0.0 serves every network interface, without any login")
    p.add_argument("--port", type=int, default=7860, help="port to serve on")
    ModelSpec.add_args(p, title="model (the page's defaults)")
    run = p.add_argument_group("tiling and output (as strsr-upscale's; --tile, -s, --resize-filter and --ext are the "
                               "page's defaults)")  # fmt: skip
    run.add_argument("--tile", type=int, help="output tile size in pixels (default: the preset's)")
    run.add_argument("--overlap", type=int, default=64, help="overlap between output tiles in pixels (as official)")
    run.add_argument("-s", "--outscale", type=float, default=4.0,
                     help="final scale: the model runs x4, then the result is resized to int(side * outscale)")
    run.add_argument("--resize-filter", default="lanczos", choices=list(RESIZE_FILTERS),
                     help="OpenCV filter of the --outscale resize")
    run.add_argument("--ext", default="auto", choices=EXTENSIONS,
                     help="output format: auto keeps each input's format where it can, or one format for all")
    run.add_argument("--rounding", default="floor", choices=ROUNDING_MODES,
                     help="float to integer samples: floor (what the official scripts write) or nearest")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="strsr-app: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # gradio's requests to its own server, one line each
    try:
        spec = ModelSpec.from_args(args)
        output = OutputOptions(outscale=args.outscale, ext=args.ext, rounding=args.rounding,
                               resize_filter=args.resize_filter)  # fmt: skip
    except ValueError as err:
        parser.error(str(err))
    try:
        from strsr.app.ui import build_app, launch
    except ImportError as err:
        log.error("the web UI needs gradio (%s): pip install 'strsr[app]'", err)
        return 2
    from strsr.app.jobs import RunError, Runner, Settings

    defaults = Settings.from_spec(spec, tile=args.tile, output=output)
    with tempfile.TemporaryDirectory(prefix="strsr-app-") as work_dir:
        runner = Runner(spec, Path(work_dir), overlap=args.overlap, rounding=args.rounding)
        try:
            runner.resolver(defaults)  # fail now, not on the first upload
        except RunError as err:
            log.error("%s", err)
            return 2
        # SIGTERM (kill, a service manager) closes the server as Ctrl-C does, so the work folder is removed
        signal.signal(signal.SIGTERM, _interrupt)
        app = build_app(runner, defaults)
        try:
            launch(app, args.host, args.port, work_dir=runner.work_dir)
        except KeyboardInterrupt:  # while starting; once serving, gradio's own loop takes it and closes the server
            app.close()
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())

"""The page: uploads and settings on the left, a before/after slider, the files to download and a log on the right.

Every setting maps onto `jobs.Settings`; errors are strsr-upscale's one-line messages, shown as Gradio's error and
warning toasts and in the log box. Gradio is imported here only, so `import strsr` never needs it.
"""

from __future__ import annotations

import html
from pathlib import Path

import gradio as gr

from strsr.app.jobs import Outcome, RunError, Runner, Settings
from strsr.inference.upscale import RESIZE_FILTERS
from strsr.io.formats import EXTENSIONS
from strsr.io.images import IMAGE_SUFFIXES
from strsr.presets import PRESETS
from strsr.spec import CONDITIONING_MODES

PRESET_DEFAULT = "preset default"


def build_app(runner: Runner, defaults: Settings) -> gr.Blocks:
    """The Gradio app over `runner`, its fields filled with `defaults` (the command line's options)."""
    with gr.Blocks(title="strsr", analytics_enabled=False, delete_cache=(3600, 3600)) as app:
        gr.Markdown("## strsr: x4 one-step diffusion-transformer super-resolution")
        with gr.Row():
            with gr.Column():
                files = gr.File(label="images", file_count="multiple", file_types=sorted(IMAGE_SUFFIXES),
                                elem_id="inputs")  # fmt: skip
                preset = gr.Dropdown(list(PRESETS), value=defaults.preset, label="preset")
                conditioning = gr.Dropdown([PRESET_DEFAULT, *CONDITIONING_MODES], label="conditioning",
                                           value=defaults.conditioning or PRESET_DEFAULT)  # fmt: skip
                with gr.Row():
                    outscale = gr.Number(defaults.outscale, label="outscale (the model runs x4, then resizes)",
                                         minimum=0.01, elem_id="outscale")  # fmt: skip
                    resize_filter = gr.Dropdown(list(RESIZE_FILTERS), value=defaults.resize_filter,
                                                label="resize filter (outscale other than 4)")  # fmt: skip
                    ext = gr.Dropdown(list(EXTENSIONS), value=defaults.ext, label="output format (auto: the input's)")
                with gr.Row():
                    tile = gr.Number(defaults.tile, label="tile (px; 0: the preset's)", precision=0, minimum=0)
                    seed = gr.Number(defaults.seed, label="seed", precision=0)
                with gr.Accordion("weights (folders on this machine)", open=False):
                    pretrained = gr.Textbox(defaults.pretrained, label="base model folder (--pretrained)")
                    checkpoint = gr.Textbox(defaults.checkpoint, label="strsr or official checkpoint (--checkpoint)")
                    vlm = gr.Textbox(defaults.vlm, label="Qwen3-VL folder (--vlm)")
                    prompt = gr.Textbox(defaults.prompt, label="prompt (--conditioning text)")
                button = gr.Button("Upscale", variant="primary", elem_id="run")
            with gr.Column():
                slider = gr.ImageSlider(label="before (bicubic) | after (strsr)", type="filepath", format="png",
                                        interactive=False, elem_id="slider")  # fmt: skip
                shown = gr.Dropdown([], label="shown in the slider", elem_id="shown")
                results = gr.File(label="results", file_count="multiple", interactive=False, elem_id="results")
                status = gr.Textbox(label="log", lines=3, interactive=False, elem_id="status")
        previews = gr.State({})  # result name -> (before, after) preview paths

        def upscale(paths, preset, conditioning, outscale, resize_filter, ext, tile, seed, pretrained, checkpoint,
                    vlm, prompt, progress=gr.Progress()):  # fmt: skip
            settings = Settings(preset=preset, conditioning="" if conditioning == PRESET_DEFAULT else conditioning,
                                outscale=outscale, resize_filter=resize_filter, ext=ext, tile=int(tile or 0),
                                seed=int(seed or 0), pretrained=pretrained, checkpoint=checkpoint, vlm=vlm,
                                prompt=prompt)  # fmt: skip
            try:
                outcome = runner.run(paths or [], settings, lambda fraction, text: progress(fraction, desc=text))
            except RunError as err:
                raise gr.Error(_html(str(err)), print_exception=False) from None
            for message in outcome.warnings:
                gr.Warning(_html(message))
            if not outcome.results:  # every file failed: their lines as one error, not also as warnings
                raise gr.Error("<br>".join(map(_html, outcome.errors)), print_exception=False)
            for message in outcome.errors:  # some failed, the rest are shown
                gr.Warning(_html(message))
            pairs = {r.name: (str(r.before), str(r.after)) for r in outcome.results}
            first = outcome.results[0].name
            return (pairs[first], gr.update(choices=list(pairs), value=first),
                    [str(r.output) for r in outcome.results], _log(outcome), pairs)  # fmt: skip

        settings = [preset, conditioning, outscale, resize_filter, ext, tile, seed, pretrained, checkpoint, vlm, prompt]
        button.click(upscale, [files, *settings], [slider, shown, results, status, previews], concurrency_limit=1)
        shown.input(lambda name, pairs: pairs.get(name), [shown, previews], [slider])
    return app


def _html(message: str) -> str:
    """Gradio shows toast messages as HTML: an uploaded file named `<b>.png` is shown as it is named."""
    return html.escape(message, quote=False)


def _log(outcome: Outcome) -> str:
    lines = [f"{r.name} -> {r.output.name} ({r.size[0]}x{r.size[1]}, {r.seconds:.1f} s)" for r in outcome.results]
    return "\n".join(outcome.warnings + lines + outcome.errors)


def launch(app: gr.Blocks, host: str, port: int, *, block: bool = True, work_dir: Path | None = None) -> None:
    """Serve on `host:port` (no share link, no server-side rendering: nothing but this machine is needed), allowing
    the files under `work_dir` (the runner's) to be shown and downloaded; `block` False returns once the server
    answers (tests; stop it with `app.close()`)."""
    app.queue(default_concurrency_limit=1).launch(server_name=host, server_port=port, share=False, ssr_mode=False,
                                                   prevent_thread_lock=not block, show_error=True, quiet=not block,
                                                   footer_links=[],
                                                   allowed_paths=[str(work_dir)] if work_dir else None)  # fmt: skip

"""`strsr-app`: a local web UI (Gradio, the `app` extra) over the same per-image path as `strsr-upscale`.

`cli` parses the command line without torch or gradio; `jobs` is what one press of the button does (no gradio:
testable as plain functions); `ui` lays out the page and maps its widgets onto `jobs`.
"""

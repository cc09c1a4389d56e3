"""The fp4sim command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

import fp4sim
from fp4sim.cli import main


def test_formats_prints_every_preset_with_its_table(capsys):
    assert main(["formats"]) == 0
    out = capsys.readouterr().out
    for name in fp4sim.format_names():
        assert name in out
    assert "0x07=6 " in out and "0x0F=-6" in out  # E2M1 max, both signs
    assert "max 448" in out and "max 57344" in out
    assert "min subnormal 0.001953125" in out  # e4m3: 2**-9
    assert "mxfp4: float4_e2m1fn elements, one float8_e8m0fnu scale per 32" in out and "4.25 bits" in out
    assert "nvfp4: float4_e2m1fn elements, one float8_e4m3fn_satfinite scale per 16" in out and "4.5 bits" in out


def test_formats_with_bias(capsys):
    assert main(["formats", "E3M0", "--bias", "0"]) == 0
    out = capsys.readouterr().out
    assert "E3M0(bias=0)" in out and "0x07=128" in out and "min normal 2" in out


def test_unknown_format_is_an_error_with_the_valid_names(capsys):
    assert main(["formats", "fp5"]) == 2
    err = capsys.readouterr().err
    assert "unknown format 'fp5'" in err and "float8_e5m2" in err


@pytest.mark.parametrize("args", [["--help"], ["formats", "--help"]])
def test_help_through_the_console_script(args):
    result = subprocess.run([sys.executable, "-m", "fp4sim.cli", *args], capture_output=True, text=True)
    assert result.returncode == 0 and "usage: fp4sim" in result.stdout


def test_quantize_hands_device_map_and_offload_folder_to_the_loader(monkeypatch, tmp_path):
    """--device-map and --offload-folder reach quantize_checkpoint (they were once parsed and then dropped)."""
    import fp4sim.quant.quantize

    seen = {}

    def record(model, text, config, out, **kwargs):
        seen.update(kwargs)
        return out

    monkeypatch.setattr(fp4sim.quant.quantize, "quantize_checkpoint", record)
    calib = tmp_path / "calib.txt"
    calib.write_text("calibration text", encoding="utf-8")
    offload = str(tmp_path / "offload")
    args = ["quantize", "--calib", str(calib), "--out", str(tmp_path / "q"), "--device-map", "auto"]
    assert main([*args, "--offload-folder", offload]) == 0
    assert seen["device_map"] == "auto" and seen["offload_folder"] == offload

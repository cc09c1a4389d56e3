"""Every subcommand with missing, unknown or malformed arguments and unreadable inputs: a non-zero exit and one
clear line on stderr, never a traceback (issue 19)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fp4sim.cli import SUBCOMMANDS, main

TEXT = Path(__file__).resolve().parents[1] / "models" / "shakespeare" / "valid.txt"
MISSING = "/nonexistent/fp4sim-test"


def cases(tmp: Path) -> list[tuple[list[str], str]]:
    """(argv, a fragment the one error line must contain)."""
    binary = tmp / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00\xc0" * 64)
    plain_dir = tmp / "plain"
    plain_dir.mkdir()
    out = str(tmp / "out")
    text = str(TEXT)
    return [
        (["bogus"], "invalid choice: 'bogus'"),
        ([], "required: COMMAND"),
        (["formats", "E9M9"], "unknown format 'E9M9'"),
        (["formats", "E2M1", "--bias", "x"], "invalid int value: 'x'"),
        (["formats", "float8_e4m3fn", "--bias", "3"], "fixed bias"),
        (["eval"], "give --text FILE"),
        (["eval", "--text", MISSING], "does not exist"),
        (["eval", "--text", str(tmp)], "cannot be read"),
        (["eval", "--text", str(binary)], "not UTF-8"),
        (["eval", "--text", text, "--dtype", "float8"], "invalid choice: 'float8'"),
        (["eval", "--text", text, "--batch-size", "two"], "invalid int value: 'two'"),
        (["eval", "--model", str(plain_dir), "--text", text], "no config.json"),
        (["eval", "--model", MISSING, "--text", text], "not a directory"),
        (["eval", "--quantized", str(plain_dir), "--text", text], "not an fp4sim export"),
        (["quantize"], "required: --calib, --out"),
        (["quantize", "--calib", text, "--out", out, "--bits", "5/5/5"], "invalid choice: '5/5/5'"),
        (["quantize", "--calib", text, "--out", out, "--grid-points", "abc"], "invalid int value: 'abc'"),
        (["quantize", "--calib", text, "--out", out, "--grid-low", "2"], "grid_low < grid_high"),
        (["quantize", "--calib", text, "--out", out, "--method", "nvfp4", "--bits", "8/8/8"], "4-bit format"),
        (["quantize", "--calib", MISSING, "--out", out], "does not exist"),
        (["quantize", "--calib", str(tmp), "--out", out], "cannot be read"),
        (["quantize", "--calib", text, "--out", f"{MISSING}/x"], "is not a directory"),
        (["quantize", "--calib", text, "--out", str(plain_dir)], "exists; choose another --out"),
        (["quantize", "--calib", text, "--out", str(plain_dir), "--overwrite"], "refusing to replace"),
        (["quantize", "--model", str(plain_dir), "--calib", text, "--out", out], "no config.json"),
        (["simulate", "--text", text], "required: --quantized"),
        (["simulate", "--quantized", MISSING, "--text", text], "not a directory"),
        (["simulate", "--quantized", str(plain_dir), "--text", MISSING], "does not exist"),
        (["cosim", "--quantized", MISSING], "one of the arguments --layer --forward is required"),
        (["cosim", "--quantized", MISSING, "--layer", "x"], "not a directory"),
        (["cosim", "--quantized", MISSING, "--layer", "x", "--rows", "0.5"], "invalid int value: '0.5'"),
        (["demo", "--tiles", "many"], "invalid int value: 'many'"),
        (["act-ranges"], "required: --text"),
        (["act-ranges", "--text", MISSING], "does not exist"),
        (["act-ranges", "--text", text, "--tokens", "lots"], "invalid int value: 'lots'"),
    ]


def run(argv: list[str], capsys) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own exit
        code = stop.code
    return code, capsys.readouterr().err


def test_every_bad_invocation_is_one_clear_line(tmp_path: Path, capsys) -> None:
    for argv, fragment in cases(tmp_path):
        code, err = run(argv, capsys)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code not in (0, None), f"fp4sim {' '.join(argv)} exited 0"
        assert "Traceback" not in err, f"fp4sim {' '.join(argv)} printed a traceback:\n{err}"
        assert len(lines) == 1 and "error:" in lines[0], f"fp4sim {' '.join(argv)}: stderr was\n{err}"
        assert fragment in lines[0], f"fp4sim {' '.join(argv)}: {lines[0]!r} lacks {fragment!r}"


@pytest.mark.parametrize("command", [module.NAME for module in SUBCOMMANDS])
def test_unknown_options_are_refused_by_every_subcommand(command: str, capsys) -> None:
    code, err = run([command, "--no-such-option"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "--no-such-option" in err or "required" in err

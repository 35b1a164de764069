"""Device selection: ``--device cpu|cuda`` on every train and eval verb, ``spikesim demo`` and
``gradcheck``; one clear error line where the CUDA backend cannot run; the loss reads the
readout through the backend; and, in the CUDA simulator, the command line end to end
(tests/test_device_sim.py, in a subprocess)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spikesim.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
SIM = os.environ.get("NUMBA_ENABLE_CUDASIM") == "1"

try:
    from numba import cuda
    HAVE_GPU = cuda.is_available()
    HAVE_NUMBA_CUDA = True
except ImportError:            # numba-cuda not installed
    HAVE_GPU, HAVE_NUMBA_CUDA = False, False

COMMANDS = ([["train", t] for t in ("demo", "ecg", "smnist", "psmnist", "shd", "ssc")]
            + [["eval", t] for t in ("ecg", "smnist", "psmnist", "shd", "ssc")]
            + [["demo"], ["gradcheck"]])


def _parser_of(parser, words):
    for w in words:
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = sub.choices[w]
    return parser


@pytest.mark.parametrize("words", COMMANDS, ids=" ".join)
def test_every_command_has_the_device_option(words):
    opt = next(a for a in _parser_of(build_parser(), words)._actions
               if "--device" in a.option_strings)
    assert opt.default == "cpu" and tuple(opt.choices) == ("cpu", "cuda")


def test_a_bad_device_is_refused_by_argparse(capsys):
    with pytest.raises(SystemExit):
        main(["train", "demo", "--device", "tpu", "--out", "x"])
    assert "--device" in capsys.readouterr().err


@pytest.mark.skipif(HAVE_GPU or SIM or not HAVE_NUMBA_CUDA, reason="a GPU or the simulator")
@pytest.mark.parametrize("words", [["train", "ecg"], ["train", "demo"], ["eval", "shd"],
                                   ["demo"], ["gradcheck"]], ids=" ".join)
def test_without_a_gpu_one_line_names_it(words, tmp_path, capsys):
    """Before any work starts and before any folder is made: one line naming the command, the
    option and what is missing."""
    out = tmp_path / "run"
    extra = {"train": ["--out", str(out)], "eval": ["--checkpoint", "x.pth"]}.get(words[0], [])
    rc = main(words + ["--device", "cuda"] + extra)
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"spikesim {' '.join(words)}: error: --device cuda: ")
    assert "GPU" in lines[0]
    assert not out.exists()


def test_without_numba_cuda_one_line_names_the_package(tmp_path):
    argv = ["train", "demo", "--device", "cuda", "--out", str(tmp_path / "r")]
    code = ("import sys; sys.modules['numba.cuda'] = None\n"
            f"from spikesim.cli import main\nsys.exit(main({argv!r}))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 2, out.stderr
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("spikesim train demo: error: --device cuda: ")
    assert "numba-cuda" in line
    assert not (tmp_path / "r").exists()


def test_the_loss_reads_the_readout_through_the_backend():
    """``Network.loss`` hands the backend what ``backend.readout`` returns (on the CPU the
    trace's own arrays, so results are those of before)."""
    from spikesim.model.config import LayerConfig, LossConfig, NetworkConfig
    from spikesim.network import Network
    cfg = NetworkConfig(n_in=3, layers=[LayerConfig(4, "rec", name="h"),
                                        LayerConfig(2, "integrator", name="out")],
                        loss=LossConfig("ce_sum_softmax", start=0))
    net = Network(cfg, seed=0, dtype=np.float64)
    x = np.random.default_rng(0).random((2, 5, 3))
    trace = net.forward(x)
    out = net.backend.readout(trace, "mem")
    assert np.shares_memory(out, trace.output_mem) and np.array_equal(out, trace.output_mem)
    seen = []
    real = net.backend.readout
    net.backend.readout = lambda tr, kind: seen.append(kind) or real(tr, kind)
    net.loss(trace, np.array([0, 1]))
    assert seen == ["mem"]


@pytest.mark.skipif(SIM or not HAVE_NUMBA_CUDA, reason="already in the simulator, or no "
                    "numba-cuda")
def test_the_command_line_on_cuda_in_the_simulator():
    """tests/test_device_sim.py in a process with the simulator on (about 2 minutes)."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "SPIKESIM_CUDASIM_HOST_PRODUCTS": "1"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_device_sim.py"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    tail = (out.stdout + out.stderr)[-6000:]
    assert out.returncode == 0, tail
    m = re.search(r"(\d+) passed", out.stdout)
    assert m and int(m.group(1)) >= 14 and "skipped" not in out.stdout, tail


@pytest.mark.skipif(HAVE_GPU or SIM, reason="a GPU or the simulator is present")
def test_gpu_check_without_a_gpu_exits_cleanly():
    """validation/gpu_check.py says in one line that there is no GPU to check: status 0, or 3
    with --require-gpu; no traceback."""
    for extra, code in (([], 0), (["--require-gpu"], 3)):
        out = subprocess.run([sys.executable, "-m", "validation.gpu_check"] + extra, cwd=ROOT,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == code, out.stderr
        lines = out.stdout.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("gpu_check: skipped, no GPU to check: ")
        assert "Traceback" not in out.stderr


def test_torch_reference_on_cuda_needs_a_gpu():
    """PyTorch CUDA timing where PyTorch finds a GPU, else a clear error; the CPU timing of the
    same problem still runs."""
    tr = pytest.importorskip("validation.torch_reference")
    if not tr.torch_available():
        pytest.skip("PyTorch is not installed")
    from validation.problems import named_spec, with_overrides
    spec = with_overrides(named_spec("shd"), batch=2, steps=5, width=4)
    r = tr.time_spec(spec, repeats=1, warmup=0, device="cpu")
    assert r["device"] == "cpu" and r["peak_bytes"] is None and r["median_s"] > 0
    if tr.torch_cuda_available():
        r = tr.time_spec(spec, repeats=1, warmup=0, device="cuda")
        assert r["device"] == "cuda" and r["peak_bytes"] > 0
    else:
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            tr.time_spec(spec, repeats=1, warmup=0, device="cuda")

"""Mutation tests: ``spikesim gradcheck --quick`` must fail on kernels with a deliberately wrong
equation.

Each mutation copies ``spikesim`` and ``validation`` into a temporary folder, changes one line
of an equation there, and runs the gradient check on the copy in a fresh process (its own Numba
cache: every kernel is compiled from the mutated source). The check must exit non-zero with
failed rows of the kinds that can see that fault, and must not crash.
"""
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# name: (file, original text, mutated text, check kinds that must report failures)
MUTATIONS = {
    "reset term dropped": (
        "spikesim/model/neurons.py",
        "u = alpha * u_prev + oma * I - theta * s_prev * dt",
        "u = alpha * u_prev + oma * I",
        {"fd", "ref"}),
    "adaptation trace at the wrong step in the backward": (
        "spikesim/backends/cpu/neuron_rows.py",
        "vload(bf, ob0 + q, w), vload(A, q, w)",
        "vload(bf, ob1 + q, w), vload(A, q, w)",
        {"fd", "ref", "tbptt-ref"}),
    "reset sign wrong in the decay gradient": (
        "spikesim/model/neurons.py",
        "galpha = -gu * (u - u_prev + theta * s_prev * dt) * ioma",
        "galpha = -gu * (u - u_prev - theta * s_prev * dt) * ioma",
        {"fd", "ref"}),
    "gaussian surrogate width off by 10 %": (
        "spikesim/model/surrogates.py",
        "a0, c0 = g / (root * s), 1.0 / (2 * s * s)",
        "a0, c0 = g / (root * s), 1.0 / (2.2 * s * s)",
        {"surrogate", "ref"}),
    "smooth derivative missing its slope k": (
        "spikesim/model/surrogates.py",
        "return sp.k * s * (sp.one - s)",
        "return s * (sp.one - s)",
        {"surrogate", "fd"}),
}

_SCRIPT = ("import spikesim, sys; print('spikesim from', spikesim.__file__, flush=True); "
           "from validation.gradcheck import main; sys.exit(main(['--quick']))")


def _run_mutated(tmp: Path, name: str):
    path, old, new, _ = MUTATIONS[name]
    root = tmp / name.replace(" ", "_")
    for pkg in ("spikesim", "validation"):
        shutil.copytree(ROOT / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    src = (root / path).read_text()
    assert src.count(old) == 1, f"{name}: the line to mutate is not in {path} exactly once"
    (root / path).write_text(src.replace(old, new))
    env = {**os.environ, "PYTHONPATH": str(root), "NUMBA_CACHE_DIR": str(root / "cache")}
    p = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=root, env=env, capture_output=True,
                       text=True, timeout=900)
    return root, p


@pytest.fixture(scope="module")
def mutated_runs(tmp_path_factory):
    """Every mutation's run, two at a time (each compiles all kernels: about a minute)."""
    tmp = tmp_path_factory.mktemp("mutations")
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {n: pool.submit(_run_mutated, tmp, n) for n in MUTATIONS}
        return {n: f.result() for n, f in futures.items()}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_gradcheck_fails_on_a_mutated_kernel(mutated_runs, name):
    root, p = mutated_runs[name]
    out = p.stdout
    assert f"spikesim from {root / 'spikesim'}" in out, out[:500] + p.stderr[-2000:]
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    assert p.returncode == 1, out[-2000:] + p.stderr[-2000:]
    failed_kinds = {line.split()[1] for line in out.splitlines() if line.startswith("  BAD")}
    assert MUTATIONS[name][3] <= failed_kinds, (name, failed_kinds)

"""The CPU kernels compiled for a 64-bit ARM CPU (AArch64 with NEON), on any machine: does
every kernel build for ARM, and what does LLVM make of its 16-lane vectors there?

No ARM machine is needed. The check runs a training step of the paper configurations
(``validation.problems``, a few steps and a small batch) in this process with an empty kernel
cache, so that Numba compiles every kernel those steps use, and keeps the LLVM IR of each as
Numba generates it, before Numba optimises it for this host. The kernels' vector primitives
choose their IR by the target (``target.vector_code``), so the process compiles for generic
x86-64 (``NUMBA_CPU_NAME=generic``), whose choices are an ARM CPU's, and checks that they are.
It then sets that IR's target to AArch64, optimises it with LLVM's O3 pipeline for an ARM
CPU (default ``neoverse-n1``, NEON: 128-bit vectors) and emits assembly, which is what Numba
does on an ARM machine. The
same IR is also compiled for an x86-64 CPU (default ``znver3``, AVX2) by the same route, for
comparison (where the vector primitives choose differently, a real x86 CPU of that kind
gets other IR: with AVX2, masked loads instead of full loads and a select).
Per spikesim function it reports the instructions, the vector instructions, the
single-lane loads and stores (a vector built or taken apart lane by lane) and the branches.

The check fails (exit status 1) if any spikesim module does not compile for the ARM target,
for example because it calls an x86-only LLVM intrinsic, or if a kernel that ran is missing
from the ARM assembly. The functions of ``spikesim.backends.cpu.fpu`` are x86-only on
purpose (they set the x86 MXCSR flags; that module defines them only on x86-64) and are
reported, not compiled.

What this does not tell: how fast the ARM code runs. Instruction counts are not times.

``python -m validation.arm_codegen [--problems shd,ecg,smnist] [--arm-cpu neoverse-n1]
[--x86-cpu znver3] [--json FILE] [--asm-dir DIR]``. Run it as its own process: it must
compile, so it points Numba's cache at a new temporary folder before importing Numba.
How it reads the IR relies on a Numba internal (``CPUCodeLibrary.add_ir_module``).
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARM_TRIPLE = "aarch64-unknown-linux-gnu"
X86_TRIPLE = "x86_64-unknown-linux-gnu"
#: modules that are x86-only by design (spikesim.backends.cpu.fpu: the MXCSR flags)
X86_ONLY = ("get_mxcsr", "set_mxcsr")

_VECTOR = re.compile(r"\bv\d+\.(16b|8h|4s|2d|8b|4h|2s)\b|\bq\d+\b|%[xyz]mm\d+")
_LANE = re.compile(r"\}\[\d+\]|\bvpinsr|\bvinsertps|\bvpextr|\bvextractps")
_SPIKESIM_DEFINE = re.compile(r'^define [^\n]*@"?_ZN\d+spikesim', re.M)
_BRANCH = re.compile(r"^(tbnz|tbz|cbz|cbnz|b\.\w+|j(?!mp)[a-z]+)\b")


def capture_ir(problems: list, batch: int = 4, steps: int = 12) -> list:
    """[(library name, LLVM IR text)] of every module Numba compiles while running one
    training step of each named problem. Call in a process whose kernel cache is empty."""
    from numba.core import codegen
    captured = []
    original = codegen.CPUCodeLibrary.add_ir_module

    def add_ir_module(self, ir_module):
        captured.append((self.name, str(ir_module)))
        return original(self, ir_module)

    codegen.CPUCodeLibrary.add_ir_module = add_ir_module
    try:
        from validation import problems as P
        for name in problems:
            spec = P.with_overrides(P.named_spec(name), batch=batch, steps=steps)
            net, x, labels = P.build(spec)
            net.loss_and_grad(x, labels)
    finally:
        codegen.CPUCodeLibrary.add_ir_module = original
    return captured


def has_target(triple: str = ARM_TRIPLE) -> bool:
    """Whether this llvmlite was built with the LLVM back end for ``triple``."""
    try:
        _llvm().Target.from_triple(triple)
        return True
    except RuntimeError:
        return False


def _llvm():
    import llvmlite.binding as llvm
    llvm.initialize_all_targets()
    llvm.initialize_all_asmprinters()
    return llvm


def compile_modules(modules: list, triple: str, cpu: str) -> dict:
    """Link ``modules`` ([(name, IR text)]) into one module for ``triple``/``cpu``, optimise
    it at O3 and emit assembly. Returns {"asm", "failed": [(name, why)], "skipped": [name]}.
    A module that defines a spikesim function and does not parse or link is a failure; any
    other module that does not link (a Numba helper defined twice) is left out."""
    llvm = _llvm()
    target = llvm.Target.from_triple(triple)
    tm = target.create_target_machine(cpu=cpu, features="", opt=3, reloc="pic")
    failed, skipped, linked = [], [], None
    for name, text in modules:
        if triple != X86_TRIPLE and name in X86_ONLY:
            skipped.append(name)
            continue
        text = re.sub(r'target triple = ".*"', f'target triple = "{triple}"', text)
        text = re.sub(r'target datalayout = ".*"', f'target datalayout = "{tm.target_data}"',
                      text)
        try:
            mod = llvm.parse_assembly(text)
            if linked is None:
                linked = mod
            else:
                linked.link_in(mod)
        except RuntimeError as e:
            if _SPIKESIM_DEFINE.search(text):
                failed.append((name, str(e).splitlines()[0][:200]))
            else:
                skipped.append(name)
    if linked is None:
        return {"asm": "", "failed": failed or [("(nothing)", "no module")], "skipped": skipped}
    pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(3))
    pb.getModulePassManager().run(linked, pb)
    try:
        asm = tm.emit_assembly(linked)
    except RuntimeError as e:
        return {"asm": "", "failed": failed + [("(emit)", str(e)[:200])], "skipped": skipped}
    return {"asm": asm, "failed": failed, "skipped": skipped}


def compile_in_child(modules: list, triple: str, cpu: str) -> dict:
    """:func:`compile_modules` in a child process, whose result comes back through a file:
    LLVM aborts the process (it does not raise) when it cannot select an instruction, such
    as an x86 intrinsic on ARM. Returns compile_modules' dict; a child that dies fails with
    the last line it printed."""
    with tempfile.TemporaryDirectory(prefix="spikesim-arm-codegen-") as tmp:
        job, result = Path(tmp) / "job.pkl", Path(tmp) / "result.pkl"
        job.write_bytes(pickle.dumps((modules, triple, cpu)))
        code = ("import pickle; from validation.arm_codegen import compile_modules; "
                f"m, t, c = pickle.load(open({str(job)!r}, 'rb')); "
                f"pickle.dump(compile_modules(m, t, c), open({str(result)!r}, 'wb'))")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parents[1], timeout=900)
        if out.returncode == 0 and result.exists():
            return pickle.loads(result.read_bytes())
    lines = (out.stdout + out.stderr).strip().splitlines()
    why = lines[-1] if lines else f"exit status {out.returncode}"
    return {"asm": "", "failed": [("(compile)", why)], "skipped": []}


def function_stats(asm: str) -> dict:
    """{function: {"instructions", "vector", "lane", "branches"}} of the spikesim functions in
    ``asm`` (the Python wrappers left out)."""
    stats, current = {}, None
    for line in asm.splitlines():
        label = re.match(r"^([A-Za-z_$][\w.$]*):", line)
        if label:
            name = label.group(1)
            current = name if "spikesim" in name and not re.match(r"(_ZN\d+)?(cpython|cfunc)",
                                                                   name) else None
            if current:
                stats[current] = {"instructions": 0, "vector": 0, "lane": 0, "branches": 0}
            continue
        if current is None or not line.startswith("\t") or line.startswith("\t."):
            continue
        ins = line.strip()
        s = stats[current]
        s["instructions"] += 1
        s["vector"] += bool(_VECTOR.search(ins))
        s["lane"] += bool(_LANE.search(ins))
        s["branches"] += bool(_BRANCH.match(ins))
    return stats


def readable(mangled: str) -> str:
    """spikesim.backends.cpu.layers.alif_forward from Numba's mangled name (``'`` appended
    for a second specialisation is left to the caller)."""
    parts, rest = [], re.sub(r"^_ZN", "", mangled)
    while True:
        m = re.match(r"(\d+)", rest)
        if not m:
            break
        n = int(m.group(1))
        word = rest[len(m.group(1)):len(m.group(1)) + n]
        rest = rest[len(m.group(1)) + n:]
        if re.match(r"^B\d|^v\d", word) or not word:
            break
        parts.append(word)
        if rest.startswith("B") or rest.startswith("E"):
            break
    return (".".join(parts) or mangled).replace("_3clocals_3e", "<locals>").replace(
        "_3clambda_3e", "<lambda>")


def _table(arm: dict, x86: dict) -> list:
    rows = []
    for name, a in arm.items():
        x = x86.get(name, {})
        rows.append({"function": readable(name), "mangled": name,
                     **{f"arm_{k}": v for k, v in a.items()},
                     **{f"x86_{k}": x.get(k) for k in a}})
    return sorted(rows, key=lambda r: -r["arm_instructions"])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--problems", default="shd,ecg,smnist",
                    help="paper configurations to run one step of (default: %(default)s)")
    ap.add_argument("--arm-cpu", default="neoverse-n1", help="default: %(default)s")
    ap.add_argument("--x86-cpu", default="znver3", help="default: %(default)s")
    ap.add_argument("--json", default=None, help="write the table as JSON here")
    ap.add_argument("--asm-dir", default=None, help="write both assembly files here")
    ap.add_argument("--all", action="store_true", help="list every function, not the kernels'")
    args = ap.parse_args(argv)
    if any(m.startswith(("numba", "spikesim")) for m in sys.modules):
        ap.error("run as its own process (python -m validation.arm_codegen): the kernel "
                 "cache must be empty when Numba starts")
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="spikesim-arm-codegen-")
    # The vector primitives choose their IR by the target (spikesim/backends/cpu/target.py):
    # generate it with the choices of an ARM CPU, which are those of generic x86-64.
    os.environ["NUMBA_CPU_NAME"] = "generic"
    os.environ.pop("NUMBA_CPU_FEATURES", None)
    from spikesim.backends.cpu.target import TARGET, vector_code
    here, arm_code = vector_code(TARGET["cpu_name"], TARGET["vector"]), vector_code(args.arm_cpu,
                                                                                 "neon")
    if here != arm_code:
        print(f"FAILED: the IR generated here ({here}) is not an ARM CPU's ({arm_code})")
        return 1
    t0 = time.perf_counter()
    modules = capture_ir([p for p in args.problems.split(",") if p])
    t_capture = time.perf_counter() - t0
    x86 = compile_modules(modules, X86_TRIPLE, args.x86_cpu)
    arm = compile_in_child(modules, ARM_TRIPLE, args.arm_cpu)    # LLVM may abort on ARM
    arm_stats, x86_stats = function_stats(arm["asm"]), function_stats(x86["asm"])
    missing = sorted(n for n in {readable(n) for n in x86_stats} - {readable(n) for n in arm_stats}
                     if n.rsplit(".", 1)[-1] not in X86_ONLY)
    if args.asm_dir:
        out = Path(args.asm_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{args.arm_cpu}.s").write_text(arm["asm"])
        (out / f"{args.x86_cpu}.s").write_text(x86["asm"])
    rows = _table(arm_stats, x86_stats)
    shown = rows if args.all else [r for r in rows if "<locals>" not in r["function"]]
    print(f"{len(modules)} modules captured in {t_capture:.0f} s ({args.problems}); "
          f"ARM {args.arm_cpu}: {len(arm_stats)} spikesim functions, x86 {args.x86_cpu}: "
          f"{len(x86_stats)}; left out on ARM: {', '.join(sorted(set(arm['skipped']))) or '-'}")
    print(f"{'function':52s} {'ARM instr':>9s} {'vector':>6s} {'lane':>5s} {'branch':>6s} | "
          f"{'x86 instr':>9s} {'vector':>6s} {'lane':>5s} {'branch':>6s}")
    for r in shown:
        name = r["function"].replace("spikesim.", "")[:52]
        print(f"{name:52s} {r['arm_instructions']:9d} {r['arm_vector']:6d} {r['arm_lane']:5d} "
              f"{r['arm_branches']:6d} | {r['x86_instructions'] or 0:9d} {r['x86_vector'] or 0:6d} "
              f"{r['x86_lane'] or 0:5d} {r['x86_branches'] or 0:6d}")
    bad = arm["failed"] + [(m, "not in the ARM assembly") for m in missing]
    for name, why in bad:
        print(f"FAILED on ARM: {name}: {why}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"arm_cpu": args.arm_cpu, "x86_cpu": args.x86_cpu, "problems": args.problems,
             "modules": len(modules), "failed": bad, "x86_only": arm["skipped"],
             "functions": rows}, indent=1))
    print("ARM build: " + ("FAILED" if bad else "every kernel compiles"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

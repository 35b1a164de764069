"""A newcomer's first runs: output folders are never silently overwritten, bad paths and values
end in one line that names the option (and leave nothing behind), help shows every default,
compilation is announced once and cached in a user folder, and the Python API refuses
non-finite parameters and non-positive time constants by name."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spikesim import cli, options
from spikesim.network import Network
from spikesim.tasks import synthetic

DEMO = ["train", "demo", "--epochs", "1", "--n-train", "64", "--quiet"]


def run(argv, capsys):
    rc = cli.main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


# -- --out that holds a run ----------------------------------------------------------------------
def test_train_refuses_a_folder_holding_a_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(DEMO + ["--out", str(out)], capsys)[0] == 0
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    history = (out / "history.json").read_text()
    rc, _, err = run(DEMO + ["--out", str(out)], capsys)
    assert rc == 2
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before   # nothing touched
    assert (out / "history.json").read_text() == history


def test_resume_continues_and_overwrite_moves_the_old_run_aside(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(DEMO + ["--out", str(out)], capsys)[0] == 0
    rc, _, _ = run(["train", "demo", "--epochs", "2", "--n-train", "64", "--quiet", "--out",
                    str(out), "--resume"], capsys)
    assert rc == 0
    assert [h["epoch"] for h in json.loads((out / "history.json").read_text())] == [1, 2]
    rc, text, _ = run(DEMO + ["--out", str(out), "--overwrite"], capsys)
    assert rc == 0 and "moved the previous run" in text
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(aside) == 1
    assert len(json.loads((aside[0] / "history.json").read_text())) == 2     # kept whole
    assert len(json.loads((out / "history.json").read_text())) == 1


def test_resume_and_overwrite_exclude_each_other(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(DEMO + ["--out", str(tmp_path / "r"), "--resume", "--overwrite"])
    assert e.value.code == 2
    assert "not allowed with" in capsys.readouterr().err


# -- bad output paths ----------------------------------------------------------------------------
@pytest.mark.parametrize("case", ["out_is_file", "out_under_file", "json_is_folder",
                                  "read_only"])
def test_bad_output_paths_give_one_line_and_leave_nothing(tmp_path, capsys, monkeypatch, case):
    f = tmp_path / "a_file"
    f.write_text("x")
    argv = DEMO + ["--out", str(tmp_path / "run")]
    if case == "out_is_file":
        argv = DEMO + ["--out", str(f)]
    elif case == "out_under_file":
        argv = DEMO + ["--out", str(f / "sub" / "run")]
    elif case == "json_is_folder":
        argv = ["demo", "--epochs", "1", "--quiet", "--json", str(tmp_path)]
    else:        # root may write anywhere: simulate a read-only folder through os.access
        real = os.access
        monkeypatch.setattr(options.os, "access",
                            lambda p, m: False if Path(p) == tmp_path else real(p, m))
    listing = sorted(p.name for p in tmp_path.iterdir())
    rc, text, err = run(argv, capsys)
    assert rc == 2 and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("spikesim ") and ("--out" in err or "--json" in err)
    assert "epoch" not in text                      # refused before any work
    assert sorted(p.name for p in tmp_path.iterdir()) == listing


def test_an_existing_output_file_is_replaced_and_new_folders_are_made(tmp_path, capsys):
    old = tmp_path / "r.json"
    old.write_text("{}")
    new = tmp_path / "a" / "b" / "r.json"
    for path in (old, new):
        options.check_file_path("--json", path)
        rc, _, err = run(["demo", "--epochs", "1", "--quiet", "--json", str(path)], capsys)
        assert rc == 0, err
        assert json.loads(path.read_text())["task"] == "delayed_cue"


def test_a_failing_command_removes_the_empty_folder_it_made(tmp_path, capsys):
    out = tmp_path / "new" / "run"
    rc, _, err = run(["train", "ecg", "--data-dir", str(tmp_path / "no_data"), "--out", str(out),
                      "--epochs", "1", "--quiet"], capsys)
    assert rc == 2 and err.startswith("spikesim train ecg: error:"), err
    assert not (tmp_path / "new").exists()


def test_remove_if_empty_keeps_folders_with_files(tmp_path):
    a = tmp_path / "a" / "b"
    a.mkdir(parents=True)
    (tmp_path / "c" / "d").mkdir(parents=True)
    (tmp_path / "c" / "d" / "f").write_text("keep")
    options.remove_if_empty([tmp_path / "a", tmp_path / "c"])
    assert not (tmp_path / "a").exists() and (tmp_path / "c" / "d" / "f").exists()


# -- option values -------------------------------------------------------------------------------
@pytest.mark.parametrize("value", ["0", "-2", "1.5", "x"])
def test_seeds_must_be_a_positive_integer(value, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["eval", "ecg", "--checkpoint", "x.pth", "--seeds", value])
    assert e.value.code == 2
    assert "--seeds" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["--lr", "0"], ["--lr", "nan"], ["--batch-size", "0"],
                                  ["--epochs", "-1"], ["--seed", "-1"]])
def test_train_values_are_checked_by_the_command_line(argv, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "demo", "--out", str(tmp_path / "r")] + argv)
    err = capsys.readouterr().err
    assert argv[0] in err
    assert not (tmp_path / "r").exists()


def test_options_types_accept_and_refuse():
    assert options.positive_int("3") == 3
    assert options.fraction("0") == 0.0
    for fn, bad in ((options.positive_int, "0"), (options.positive_float, "inf"),
                    (options.fraction, "1"), (options.nonnegative_int, "-1")):
        with pytest.raises(Exception, match="must be"):
            fn(bad)


# -- help ----------------------------------------------------------------------------------------
def test_help_shows_defaults_and_choices(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "ecg", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("--seed SEED seed of initialisation, batch order and validation split "
                   "(default: 0)", "--batch-size BATCH_SIZE (default: 64)",
                   "learning rate (default: 0.01)", "{gaussian,multi_gaussian,linear,slayer,",
                   "{float32,float64}", "(default: float32)"):
        assert needle in text, needle
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "``" not in capsys.readouterr().out


def test_every_option_of_every_command_has_help():
    import argparse
    missing = []

    def walk(parser, name):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for k, sub in a.choices.items():
                    walk(sub, f"{name} {k}")
            elif a.option_strings and not (a.help or "").strip():
                missing.append(f"{name} {a.option_strings[0]}")
    walk(cli.build_parser(), "spikesim")
    assert missing == []


# -- compilation: announced once, cached in the user's cache folder -------------------------------
def _compile_small_kernel(env):
    code = ("import numpy as np\n"
            "from spikesim.backends.cpu.lists import lists_sum\n"
            "z = np.zeros(1, np.int64)\n"
            "print(lists_sum(z, z, np.zeros(1, np.float32)))\n")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)


def test_compilation_is_announced_once_with_the_cache_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["SPIKESIM_CACHE_DIR"] = str(tmp_path / "cache")
    first = _compile_small_kernel(env)
    assert first.returncode == 0, first.stderr
    assert "compiling kernels" in first.stderr and str(tmp_path / "cache") in first.stderr
    assert any((tmp_path / "cache").rglob("*.nbi"))          # the cache went where it said
    second = _compile_small_kernel(env)
    assert second.returncode == 0 and "compiling" not in second.stderr


def test_kernel_cache_dir_defaults_to_a_user_folder(tmp_path):
    code = ("import spikesim, numba; print(spikesim.kernel_cache_dir()); "
            "print(numba.config.CACHE_DIR)")
    env = {k: v for k, v in os.environ.items()
           if k not in ("NUMBA_CACHE_DIR", "SPIKESIM_CACHE_DIR", "XDG_CACHE_HOME")}
    env["HOME"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    lines = out.stdout.split()
    assert lines == [str(tmp_path / ".cache" / "spikesim" / "numba")] * 2, out.stderr


# -- the Python API checks parameters as it checks inputs ----------------------------------------
@pytest.mark.parametrize("name,value,words", [
    ("hidden.W_rec", np.nan, "hidden.W_rec contains NaN"),
    ("hidden.W_in", np.inf, "hidden.W_in contains NaN or inf"),
    ("hidden.tau_m", 0.0, "hidden.tau_m holds time constants <= 0"),
    ("hidden.tau_adp", -3.0, "hidden.tau_adp holds time constants <= 0"),
    ("out.tau_m", -1.0, "out.tau_m holds time constants <= 0"),
])
def test_bad_parameters_are_named(name, value, words):
    net = Network(synthetic.network_config())
    x = np.zeros((2, 5, synthetic.N_IN), np.float32)
    net.forward(x)
    net.params[name].flat[1] = value
    with pytest.raises(ValueError, match=words):
        net.loss_and_grad(x, np.zeros(2, np.int64))
    with pytest.raises(ValueError, match=words):      # and when handed to the constructor
        Network(synthetic.network_config(), params=net.params)


# -- records and progress ------------------------------------------------------------------------
def test_result_files_record_machine_vector_target_and_versions(tmp_path, capsys):
    path = tmp_path / "sub" / "demo.json"
    assert run(["demo", "--epochs", "1", "--quiet", "--json", str(path)], capsys)[0] == 0
    rec = json.loads(path.read_text())
    assert rec["task"] == "delayed_cue"
    run_rec = rec["run"]
    assert run_rec["versions"]["numba"] and run_rec["threads"] >= 1
    target = run_rec["machine"]["kernel_target"]
    assert target["cpu_name"] and target["vector"] in ("avx512f", "avx2", "neon", "none")


def test_kernel_target_follows_numba_cpu_name():
    code = "from spikesim.train.manifest import kernel_target; print(kernel_target()['vector'])"
    for extra, vector in (({"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": ""}, "avx2"),
                          ({"NUMBA_CPU_NAME": "generic"}, "none")):
        env = {**os.environ, **extra}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True)
        assert out.stdout.strip() == vector, out.stderr


def test_list_builder_by_cpu():
    from spikesim.backends.cpu.target import list_builder
    assert list_builder("skylake-avx512", "avx512f") == "vcompress"
    assert list_builder("sapphirerapids", "avx512f") == "vcompress"
    assert list_builder("znver4", "avx512f") == "bits"       # microcoded compress stores
    assert list_builder("haswell", "avx2") == "bits" and list_builder("generic", "none") == "bits"


def test_vector_code_by_cpu():
    """The choices that shape the kernels' IR: an ARM CPU's are generic x86-64's (which
    validation/arm_codegen.py relies on), AVX2 has a masked load, only AVX-512 cheap masks."""
    from spikesim.backends.cpu.target import vector_code
    arm, generic = vector_code("neoverse-n1", "neon"), vector_code("generic", "none")
    assert arm == generic == {"list_builder": "bits", "cheap_masked": False, "masked_load": False}
    assert vector_code("znver3", "avx2") == {"list_builder": "bits", "cheap_masked": False,
                                             "masked_load": True}
    assert vector_code("skylake-avx512", "avx512f") == {"list_builder": "vcompress",
                                                        "cheap_masked": True, "masked_load": True}


def test_training_with_progress_bars_starts_them_after_the_first_batch(tmp_path, capsys):
    from spikesim.train.trainer import ArrayDataset, TrainConfig, Trainer
    train, _ = synthetic.datasets(n_train=64, n_test=8)
    net = Network(synthetic.network_config(8))
    hist = Trainer(net, TrainConfig(epochs=2, batch_size=16), train,
                   ArrayDataset(train.x[:8], train.labels[:8]), progress=True).fit()
    assert [h["epoch"] for h in hist] == [1, 2]
    err = capsys.readouterr().err
    # epoch 1's bar first shows after its first batch: 1/4 at the earliest; epoch 2's at 0/4
    assert "epoch 1/2" in err and "0/4" not in err.split("epoch 2/2")[0]


def test_the_readme_python_examples_run(tmp_path, monkeypatch):
    import re
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile("\n".join(blocks), "README.md", "exec"), scope)
    assert set(scope["grads"]) == set(scope["net"].params)
    assert len(scope["history"]) == 5 and (tmp_path / "runs" / "mine" / "last.ckpt").exists()

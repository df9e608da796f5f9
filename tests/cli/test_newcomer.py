"""What a newcomer meets on the command line: one ``cnn_xp`` command, full flag names only, one
clear error line, a resumed run that keeps its plan, progress for the whole run, tidy outputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import threadpoolctl

from cnn_xp import __version__
from cnn_xp.cli import COMMANDS
from cnn_xp.cli import main as cnn_xp_main
from cnn_xp.cli import train as train_cli
from cnn_xp.datasets import load_dataset
from cnn_xp.train import Trainer, load_checkpoint, resources
from cnn_xp.train.resources import auto_threads

QUICK = ["--device", "cpu", "--train-size", "300", "--test-size", "100", "--batch-size", "50"]
REPO = Path(__file__).resolve().parents[2]


def run(*args, cwd=None, timeout=120):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def one_error_line(capsys, prog="python -m cnn_xp.train"):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"{prog}: error: ") and "Traceback" not in err, err
    return err


# ---------------------------------------------------------------------- one command-line home


def test_console_script_and_python_dash_m_cnn_xp():
    script = Path(sys.executable).with_name("cnn_xp")
    assert script.is_file(), "the cnn_xp console script is installed with the package"
    for cmd in ([str(script)], [sys.executable, "-m", "cnn_xp"]):
        version = run(*cmd, "--version")
        assert version.returncode == 0 and version.stdout.strip() == f"cnn_xp {__version__}"
        overview = run(*cmd, "--help")
        assert overview.returncode == 0 and all(name in overview.stdout for name in COMMANDS)
        bad = run(*cmd, "trian")
        assert bad.returncode == 2 and bad.stderr.strip() == (
            f"cnn_xp: error: unknown command 'trian'; expected one of {', '.join(COMMANDS)}"
        )
    nothing = run(str(script))
    assert nothing.returncode == 2 and "usage: cnn_xp COMMAND" in nothing.stderr


def test_every_command_runs_three_ways(tmp_path):
    """``cnn_xp X``, ``python -m cnn_xp X`` and ``python -m cnn_xp.X`` are the same program."""
    script = str(Path(sys.executable).with_name("cnn_xp"))
    for name in COMMANDS:
        outputs = []
        for cmd, prog in (
            ([script, name], f"cnn_xp {name}"),
            ([sys.executable, "-m", "cnn_xp", name], f"cnn_xp {name}"),
            ([sys.executable, "-m", f"cnn_xp.{name}"], f"python -m cnn_xp.{name}"),
        ):
            result = run(*cmd, "--help")
            assert result.returncode == 0, (cmd, result.stderr)
            assert result.stdout.startswith(f"usage: {prog} ")
            outputs.append(result.stdout.split("options:", 1)[1])  # the usage line wraps by the prog's length
        assert outputs[0] == outputs[1] == outputs[2]


def test_help_has_no_noise():
    for name in COMMANDS:
        text = run(sys.executable, "-m", "cnn_xp", name, "--help").stdout
        assert "(default: None)" not in text and "(default: False)" not in text, name
        assert "``" not in text and ":func:" not in text, name  # no reStructuredText markup
    train_help = run(sys.executable, "-m", "cnn_xp.train", "--help").stdout
    assert "cosine schedule" not in train_help.split("--lr LR")[1].split("--lr-schedule")[0]  # the default is exp
    assert "summary.json" in train_help


@pytest.mark.parametrize(
    ("command", "argv", "word"),
    [
        ("train", ["--epoch", "3"], "--epoch"),
        ("train", ["--train-siz", "100"], "--train-siz"),
        ("evaluate", ["x.safetensors", "--batch", "10"], "--batch"),
        ("predict", ["x.safetensors", "a.png", "--dev", "cpu"], "--dev"),
        ("export", ["x.safetensors", "m.onnx", "--soft"], "--soft"),
        ("bench", ["--model", "simple"], "--model"),
    ],
)
def test_abbreviated_flags_are_refused(command, argv, word, capsys):
    assert cnn_xp_main([command, *argv]) == 2
    err = one_error_line(capsys, f"cnn_xp {command}")
    assert f"unrecognized arguments: {word}" in err


def test_error_prefixes_are_not_repeated(capsys):
    assert train_cli.main(["--dataset", "nope"]) == 2
    err = one_error_line(capsys)
    assert "--dataset: unknown dataset 'nope'" in err and "dataset: dataset" not in err
    assert train_cli.main(["--device", "tpu"]) == 2
    err = one_error_line(capsys)
    assert "--device: unknown device 'tpu'" in err and "device: device" not in err


def test_cifar10_name_says_where_to_put_the_binary_batches(capsys):
    assert train_cli.main(["--dataset", "cifar10"]) == 2
    err = one_error_line(capsys)
    assert "binary version" in err and "cifar-10-batches-bin" in err and "data_batch_1.bin" in err


def test_dataset_names_ignore_case():
    (x, _), _ = load_dataset("MNIST", normalize=False)
    (x2, _), _ = load_dataset(" Mnist ", normalize=False)
    assert x.shape == (60000, 1, 28, 28) and np.array_equal(x[:5], x2[:5])


# ---------------------------------------------------------------------- resume keeps its plan


def interrupt_after_first_epoch(monkeypatch):
    """Make the next CLI run stop (as a Ctrl-C does) one step into its second epoch."""
    original = Trainer._end_epoch

    def end_epoch(self, epochs):
        original(self, epochs)
        if self.epoch == 1:
            self._interrupted = signal.SIGINT  # as the Ctrl-C handler records it

    monkeypatch.setattr(Trainer, "_end_epoch", end_epoch)


def test_resume_continues_the_interrupted_runs_plan_and_says_so(tmp_path, monkeypatch, capsys):
    straight = tmp_path / "straight"
    assert train_cli.main([*QUICK, "--epochs", "3", "--quiet", "--out", str(straight)]) == 0
    run_dir = tmp_path / "run"
    with monkeypatch.context() as m:
        interrupt_after_first_epoch(m)
        assert train_cli.main([*QUICK, "--epochs", "3", "--quiet", "--out", str(run_dir)]) == 130
    capsys.readouterr()
    ck = load_checkpoint(run_dir / "last.safetensors")
    assert (ck.trainer["epoch"], ck.trainer["step_in_epoch"]) == (1, 1) and ck.run["epochs"] == 3
    # no --epochs; the device is the session's, not the plan's (auto would take a GPU where there is one)
    assert train_cli.main(["--resume", str(run_dir / "last.safetensors"), "--quiet", "--device", "cpu"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"resuming from {run_dir / 'last.safetensors'}: in epoch 2 after step 1 of 6 (global step 7); "
        "training to epoch 3"
    ]
    done = load_checkpoint(run_dir / "last.safetensors")
    assert done.trainer["epoch"] == 3  # the plan (3 epochs), not the command line's default (8)
    expected = load_checkpoint(straight / "last.safetensors").model_state
    for key, value in done.model_state.items():
        np.testing.assert_array_equal(value, expected[key])  # and exactly where the straight run ends


def test_resume_of_a_finished_run_asks_for_more_epochs(tmp_path, capsys):
    assert train_cli.main([*QUICK, "--epochs", "1", "--quiet", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert train_cli.main(["--resume", str(tmp_path / "last.safetensors")]) == 2
    err = one_error_line(capsys)
    assert "already has 1 of its 1 epochs; pass --epochs N with N > 1" in err
    assert train_cli.main(["--resume", str(tmp_path / "last.safetensors"), "--epochs", "2", "--quiet"]) == 0
    assert "after epoch 1 (global step 6); training to epoch 2" in capsys.readouterr().err


# ---------------------------------------------------------------------- outputs


def test_outputs_are_listed_and_written(tmp_path, capsys):
    assert train_cli.main([*QUICK, "--epochs", "1", "--quiet", "--out", str(tmp_path)]) == 0
    listed = capsys.readouterr().out.splitlines()[-1]
    names = listed.split("(", 1)[1].rstrip(")").split(", ")
    assert "summary.json" in names
    assert sorted(names) == sorted(p.name for p in tmp_path.iterdir())


def test_a_run_that_diverges_before_its_first_checkpoint_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--device", "cpu", "--train-size", "3000", "--test-size", "100", "--epochs", "1", "--lr", "1e30"]
    assert train_cli.main([*argv, "--quiet", "--out", str(out)]) == 1
    assert "non-finite loss" in capsys.readouterr().err
    assert not out.exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    assert train_cli.main([*argv, "--quiet", "--out", str(kept)]) == 1
    assert kept.is_dir()  # a folder the user made is never removed


def test_filters_plot_shows_the_change_from_the_initial_weights(tmp_path):
    from cnn_xp.train.plots import plot_filters

    rng = np.random.default_rng(0)
    W0 = rng.standard_normal((6, 1, 5, 5))
    plot_filters(W0 + 0.1, tmp_path / "f.png", W0=W0)
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.png"]  # written through a temporary file
    with pytest.raises(ValueError, match=r"W0: expected the shape of W \(6, 1, 5, 5\), got \(6, 1, 3, 3\)"):
        plot_filters(W0, tmp_path / "g.png", W0=W0[:, :, :3, :3])


@pytest.mark.slow
def test_examples_write_only_into_their_output_folder(tmp_path):
    for example, args in (
        ("port_from_the_book", ["--iters", "2"]),
        ("visualize", ["--train-size", "200"]),
        ("custom_network", ["--train-size", "200"]),
        ("gpu_vs_cpu", []),
    ):
        result = run(sys.executable, str(REPO / "examples" / f"{example}.py"), *args, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert str(Path("runs") / "examples" / example) in result.stdout  # it says where
    files = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    run_files = ["best.safetensors", "last.safetensors", "metrics.csv"]  # a Trainer's files
    assert files == [
        *(f"runs/examples/custom_network/{name}" for name in run_files),
        "runs/examples/gpu_vs_cpu/results.json",
        "runs/examples/port_from_the_book/params.safetensors",
        "runs/examples/visualize/activations.png",
        "runs/examples/visualize/filters_after.png",
        "runs/examples/visualize/filters_before.png",
    ]


# ---------------------------------------------------------------------- threads


def test_default_threads_depend_on_the_machine_only(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setattr(resources, "busy_cores", lambda: pytest.fail("the default must not read the load"))
    assert resources.default_threads() == 4 and resources.default_threads(2) == 2 and resources.default_threads(8) == 1


def test_auto_threads_leaves_busy_cores_alone(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    assert auto_threads(busy=0) == 4 and auto_threads(2, busy=0) == 2 and auto_threads(8, busy=0) == 1
    assert auto_threads(busy=1) == 3 and auto_threads(busy=2.7) == 1 and auto_threads(busy=9) == 1


def test_busy_cores_counts_other_running_work():
    if not Path("/proc/loadavg").is_file():
        pytest.skip("no /proc/loadavg on this platform")
    idle = resources.busy_cores()
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        import time

        time.sleep(0.5)
        busy = resources.busy_cores()
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert busy >= idle + 1 and busy >= 1  # two spinning processes are seen (at least one at each reading)


def test_threads_flag_sets_the_blas_threads_during_training(tmp_path, monkeypatch, capsys):
    seen = []
    original = Trainer.fit

    def fit(self, epochs):
        seen.append([i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"])
        return original(self, epochs)

    monkeypatch.setattr(Trainer, "fit", fit)
    assert train_cli.main([*QUICK, "--epochs", "1", "--threads", "1", "--out", str(tmp_path)]) == 0
    assert seen == [[1]]
    assert "threads: 1" in capsys.readouterr().err.splitlines()[0]
    assert train_cli.main(["--threads", "0"]) == 2
    assert "--threads: expected a thread count in [1, 4096] or 'auto', got 0" in one_error_line(capsys)


@pytest.mark.slow
def test_default_threads_keep_weights_bit_identical_under_load(tmp_path, capsys):
    """The default thread count depends on the machine, not on its load: a run beside busy
    processes gives the same weights as a run on the idle machine (and, since DeepConvNet splits
    its batches across threads instead of waiting on BLAS's, does not suggest --threads auto)."""
    from cnn_xp.train import load_checkpoint

    args = ["--device", "cpu", "--train-size", "200", "--test-size", "100", "--batch-size", "50", "--model", "deep"]
    assert train_cli.main([*args, "--epochs", "1", "--out", str(tmp_path / "idle")]) == 0
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        import time

        time.sleep(0.5)
        capsys.readouterr()
        assert train_cli.main([*args, "--epochs", "1", "--out", str(tmp_path / "busy")]) == 0
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    assert "--threads auto" not in capsys.readouterr().err
    a = load_checkpoint(tmp_path / "idle" / "last.safetensors").model_state
    b = load_checkpoint(tmp_path / "busy" / "last.safetensors").model_state
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_the_threads_hint_comes_only_for_a_network_on_blas_threads(tmp_path, capsys, monkeypatch):
    """On a busy machine, only a network that cannot split its batches (a layer of the user's that
    is not shard_safe) runs its products on BLAS's spinning threads: only there is the hint given."""
    import cnn_xp
    from cnn_xp import Affine, Network
    from cnn_xp.layers import LAYER_TYPES
    from cnn_xp.models import MODELS

    class Twice(cnn_xp.Layer):  # a user's layer: shard_safe is not claimed
        def forward(self, x, train=True):
            return x * 2

        def backward(self, dout):
            return dout * 2

    def flat(input_dim, output_size, *, dtype="float32", device=None, seed=None):
        w = np.random.default_rng(seed).standard_normal((int(np.prod(input_dim)), output_size)).astype(dtype) * 0.01
        return Network([("twice", Twice()), ("fc", Affine(w, np.zeros(output_size, dtype)))], input_dim=input_dim)

    monkeypatch.setattr(train_cli, "busy_cores", lambda: 2.0)
    monkeypatch.setattr("cnn_xp.train.resources.usable_cores", lambda: 2)  # the default: 2 threads
    cnn_xp.register_layer(Twice)
    cnn_xp.register_model("flat", flat)
    try:
        args = ["--device", "cpu", "--train-size", "100", "--test-size", "50", "--epochs", "1", "--quiet"]
        for model, hinted in (("flat", True), ("simple", False)):
            capsys.readouterr()
            argv = [*args[:-1], "--model", model, "--out", str(tmp_path / model)]
            assert train_cli.main(argv) == 0
            err = capsys.readouterr().err
            assert ("--threads auto (or 1) trains faster on a busy machine" in err) is hinted, (model, err)
    finally:
        MODELS.remove("flat")
        LAYER_TYPES.remove("Twice")

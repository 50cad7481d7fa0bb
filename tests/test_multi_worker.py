"""Two TensorFlow workers on 127.0.0.1 (MultiWorkerMirroredStrategy from TF_CONFIG, started by
tools/launch_local_cluster.py): they train like one process, a run completes with only the chief
writing the run folder, and a job whose worker is killed resumes from the backup and ends bit for
bit like the uninterrupted job.

Every subprocess runs under a timeout and is killed in teardown. Run as a script, this file is
the worker program of the parity test: `python tests/test_multi_worker.py step OUT_DIR`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAUNCHER = ROOT / "tools" / "launch_local_cluster.py"
JOB_TIMEOUT_S = 240
# Weights after one step on 2 workers vs 1 process, same global batch: only the order of float32
# sums differs (the all-reduce), as in tests/harness.py's replica parity.
STATE_TOLERANCE = 1e-5
STEP_IMAGES = 16  # one global batch: 8 per worker
# What differs from the in-process replica parity every family passes (tests/test_models.py) is
# the transport: TF_CONFIG, DATA sharding, collectives between processes, Keras' multi-worker
# paths. These families cover the train-step helpers that meet it: two optimizers with synced
# batch norm (gan), noise paired with examples (vae: checks which rows each worker gets), and
# uniform draws with a nested gradient penalty (wgan_gp).
PARITY_FAMILIES = ("gan", "vae", "wgan_gp")
STEP_SEED = 7


def zoo_command():
    zoo = Path(sys.executable).with_name("zoo")
    return [str(zoo)] if zoo.exists() else [sys.executable, "-m", "zoo.cli"]


def step_cases():
    """The harness's first case (tests/harness.py) of each family in PARITY_FAMILIES, on digits."""
    import dataclasses

    import harness

    cases = {}
    for case in harness.CASES:
        if case.name in PARITY_FAMILIES:
            cases.setdefault(case.name, dataclasses.replace(case, dataset="digits"))
    return list(cases.values())


def one_step(case, strategy, dataset_options=None):
    """Build `case` in `strategy`'s scope, fit one step on the first STEP_IMAGES images."""
    import keras

    import zoo

    keras.utils.set_random_seed(1)
    with strategy.scope():
        model = case.build(seed=STEP_SEED)
        model.compile()
    images, labels = case.arrays(STEP_IMAGES)
    dataset = zoo.data.from_arrays(images, labels, batch_size=STEP_IMAGES, shuffle=False)
    history = model.fit(zoo.distribute.shard(dataset), epochs=1, verbose=0).history
    import numpy as np

    return [np.asarray(v) for v in model.weights], {k: float(v[0]) for k, v in history.items()}


def worker_step(out_dir: str) -> None:
    """The parity test's worker: one step per case under TF_CONFIG's cluster; saves its weights."""
    import numpy as np

    from zoo import distribute

    strategy = distribute.get_strategy("multi_worker")  # first: before any TensorFlow op
    sys.path.insert(0, str(ROOT / "tests"))
    _, index = distribute.task()
    for case in step_cases():
        weights, losses = one_step(case, strategy)
        np.savez(Path(out_dir) / f"{case.id}-worker{index}.npz", *weights)
        (Path(out_dir) / f"{case.id}-worker{index}.json").write_text(json.dumps(losses))
        print(f"{case.id}: {losses}", flush=True)


# ---- running jobs from the tests -----------------------------------------------------------
class Job:
    """tools/launch_local_cluster.py N -- COMMAND in the background, its output collected."""

    def __init__(self, workers, command, env=None):
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, str(LAUNCHER), str(workers), "--timeout", str(JOB_TIMEOUT_S), "--",
             *command],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def worker_pids(self) -> dict[int, int]:
        found = re.findall(r"\[launcher\] worker (\d+) pid (\d+)", self.output)
        return {int(index): int(pid) for index, pid in found}

    def wait(self, timeout=JOB_TIMEOUT_S + 30) -> int:
        code = self.process.wait(timeout)
        self.reader.join(10)
        return code

    def kill(self):
        """Stop the launcher (it stops its workers), then any worker still alive, by pid."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        for pid in self.worker_pids().values():
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _main():
    if len(sys.argv) == 3 and sys.argv[1] == "step":
        worker_step(sys.argv[2])
    else:
        sys.exit(f"usage: {sys.argv[0]} step OUT_DIR")


if __name__ == "__main__":
    _main()
else:
    import keras
    import numpy as np
    import pytest
    import tensorflow as tf

    pytestmark = pytest.mark.slow  # separate TensorFlow processes: 25-45 s each

    @pytest.fixture
    def jobs():
        started: list[Job] = []

        def start(workers, command, env=None):
            job = Job(workers, command, env)
            started.append(job)
            return job

        yield start
        for job in started:
            job.kill()

    def tiny_train(out, epochs, steps=3):
        return [*zoo_command(), "train", "gan", "--dataset", "digits", "--batch-size", "64",
                "--seed", "1", "--epochs", str(epochs), "--steps-per-epoch", str(steps),
                "--model-arg", "base_filters=8", "--model-arg", "latent_dim=8",
                "--strategy", "multi_worker", "--verbose", "2", "--out", str(out)]

    def test_two_workers_train_like_one_process(jobs, tmp_path):
        job = jobs(2, [sys.executable, str(Path(__file__).resolve()), "step", str(tmp_path)])
        assert job.wait() == 0, job.output[-6000:]
        for case in step_cases():
            expected, expected_losses = one_step(case, tf.distribute.OneDeviceStrategy("/cpu:0"))
            for index in (0, 1):
                saved = np.load(tmp_path / f"{case.id}-worker{index}.npz")
                got = [saved[f"arr_{i}"] for i in range(len(saved.files))]
                assert len(got) == len(expected), case.id
                for a, b in zip(got, expected):
                    np.testing.assert_allclose(a, b, atol=STATE_TOLERANCE, rtol=0, err_msg=case.id)
                losses = json.loads((tmp_path / f"{case.id}-worker{index}.json").read_text())
                for name, value in expected_losses.items():
                    np.testing.assert_allclose(losses[name], value, rtol=1e-5, err_msg=case.id)

    def test_a_two_worker_run_completes_and_only_the_chief_writes_the_run_folder(jobs, tmp_path):
        run, scratch = tmp_path / "run", tmp_path / "scratch"
        scratch.mkdir()
        job = jobs(2, tiny_train(run, epochs=2), env={"TMPDIR": str(scratch)})
        assert job.wait() == 0, job.output[-6000:]
        assert sorted(p.name for p in run.iterdir()) == [
            "config.json", "grids", "history.csv", "logs", "model.keras"
        ]
        assert sorted(p.name for p in (run / "grids").iterdir()) == [
            "epoch-001.png", "epoch-002.png"
        ]
        rows = (run / "history.csv").read_text().strip().splitlines()
        assert [row.split(",")[0] for row in rows[1:]] == ["0", "1"]
        config = json.loads((run / "config.json").read_text())
        assert config["status"] == "finished" and config["workers"] == 2
        assert config["replicas"] == 2 and config["xla"]["enabled"] is False
        assert "worker 1 of 2: 2 replica(s)" in job.output
        assert list(scratch.glob("zoo-*")) == []  # worker 1 wrote into its own folder, removed it
        model = keras.models.load_model(run / "model.keras")
        assert model.sample(2, seed=0).shape == (2, 8, 8, 1)

    def test_a_killed_worker_and_a_restarted_job_resume_from_the_backup(jobs, tmp_path):
        run, epochs, scratch = tmp_path / "run", 5, tmp_path / "scratch"
        scratch.mkdir()
        env = {"TMPDIR": str(scratch)}
        job = jobs(2, tiny_train(run, epochs), env=env)
        metadata = run / "backup" / "training_metadata.json"
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while time.monotonic() < deadline and job.process.poll() is None:
            if metadata.exists() and json.loads(metadata.read_text() or "{}").get("epoch", 0) >= 2:
                break
            time.sleep(0.2)
        assert job.process.poll() is None, job.output[-6000:]
        os.kill(job.worker_pids()[1], signal.SIGKILL)
        assert job.wait() != 0  # the launcher stops the chief, which would wait for worker 1
        # the launcher's SIGTERM reaches the chief as an interrupt: it records the epochs done
        config = json.loads((run / "config.json").read_text())
        assert config["status"] == "interrupted" and not (run / "model.keras").exists()
        finished = json.loads(metadata.read_text())["epoch"]
        assert 2 <= finished < epochs and config["epochs_done"] == finished

        assert len(list(scratch.glob("zoo-*"))) == 1  # what killed worker 1 left in its folder

        again = jobs(2, tiny_train(run, epochs), env=env)
        assert again.wait() == 0, again.output[-6000:]
        # Keras prints "Epoch k/N" from 1: the restarted job starts after the backed-up epochs
        started = re.findall(r"\[worker 0\] Epoch (\d+)/", again.output)
        assert started and int(started[0]) == finished + 1, (finished, started)
        rows = (run / "history.csv").read_text().strip().splitlines()
        assert [row.split(",")[0] for row in rows[1:]] == [str(e) for e in range(epochs)]
        assert json.loads((run / "config.json").read_text())["status"] == "finished"
        assert not (run / "backup").exists()
        assert list(scratch.glob("zoo-*")) == []  # the restarted worker 1 cleared and removed it

        # Exact: the same job uninterrupted ends with the same weights, optimizer states and
        # losses, bit for bit (the kill may land within an epoch, which then runs again).
        whole = tmp_path / "whole"
        assert jobs(2, tiny_train(whole, epochs), env=env).wait() == 0
        assert (run / "history.csv").read_text() == (whole / "history.csv").read_text()
        for got, expected in zip(saved_state(run), saved_state(whole), strict=True):
            np.testing.assert_array_equal(got[1], expected[1], err_msg=got[0])

    def saved_state(run):
        """model.keras's variables: every weight and each optimizer's (iterations, moments)."""
        model = keras.models.load_model(run / "model.keras")
        variables = list(model.weights)
        for role in model.optimizer_roles:
            variables += getattr(model, role).variables
        return [(v.path, keras.ops.convert_to_numpy(v)) for v in variables]

"""Strategies, workers, precision and XLA: how a model trains on one device, many, or many machines.

    strategy = zoo.distribute.get_strategy("auto")   # "auto" | "cpu" | "one_device" | "mirrored" | "multi_worker"
    with strategy.scope():
        model = zoo.build("gan", dtype="mixed_bfloat16")   # or precision via zoo.train(precision=...)
        model.compile()                                    # jit_compile="auto": see choose_jit_compile

Several machines: TensorFlow's MultiWorkerMirroredStrategy, configured by the standard TF_CONFIG
environment variable that cluster launchers set (`tools/launch_local_cluster.py` sets it for N
local processes). Every worker runs the same program; `is_chief` says which one writes the run
folder, `worker_dir` gives the others a temporary folder of their own, and `shard` makes each
worker take its part of every global batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import tensorflow as tf


def _gpus():
    return tf.config.list_logical_devices("GPU")


def _cpu():
    return tf.distribute.OneDeviceStrategy("/cpu:0")


def _one_device():
    gpus = _gpus()
    return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")


def _mirrored():
    """All GPUs; on a CPU-only machine, all logical CPU devices (see `split_cpu`).

    On CPU devices gradients are reduced through one device rather than with collective ops:
    a second MirroredStrategy in the same process reused collective instance keys of the first
    ("Shape mismatch in the collective instance 100", tensorflow#62790), which tests and
    notebooks that build several models hit.
    """
    gpus = _gpus()
    if gpus:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    return tf.distribute.MirroredStrategy(
        [d.name for d in tf.config.list_logical_devices("CPU")],
        cross_device_ops=tf.distribute.ReductionToOneDevice(),
    )


def _multi_worker():
    """MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (one local worker without it).

    Create it first thing in the program, before TensorFlow runs any op: it starts this worker's
    gRPC server and configures collective ops, which cannot change afterwards.
    """
    tf_config()  # a clear error for a malformed TF_CONFIG, before TensorFlow parses it
    return tf.distribute.MultiWorkerMirroredStrategy()


# ---- TF_CONFIG: the cluster and this process's place in it ---------------------------------
def tf_config() -> dict:
    """TF_CONFIG as a dict ({} when unset); a ValueError naming the problem when malformed."""
    text = os.environ.get("TF_CONFIG") or ""
    if not text.strip():
        return {}
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {text[:200]!r}") from None
    cluster, task = config.get("cluster"), config.get("task")
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ValueError(  # noqa: TRY004 (a bad setting: one line from the CLI, as ValueError)
            'TF_CONFIG needs "cluster" and "task", e.g. {"cluster": {"worker": ["host1:port", '
            f'"host2:port"]}}, "task": {{"type": "worker", "index": 0}}}}; got {text[:200]!r}'
        )
    jobs = cluster.get(task.get("type"))
    index = task.get("index")
    if not isinstance(jobs, list) or not isinstance(index, int) or not 0 <= index < len(jobs):
        raise ValueError(
            f"TF_CONFIG task {task!r} is not one of the cluster's tasks {cluster!r}"
        )
    return config


def cluster_workers() -> int:
    """Number of training tasks (chief + workers) TF_CONFIG describes (0 when it is unset)."""
    cluster = tf_config().get("cluster", {})
    return len(cluster.get("chief", [])) + len(cluster.get("worker", []))


def task() -> tuple[str, int]:
    """(task type, index) of this process: ("worker", 0) when TF_CONFIG is unset."""
    config = tf_config().get("task") or {"type": "worker", "index": 0}
    return config["type"], config["index"]


def is_multi_worker(strategy: tf.distribute.Strategy | None = None) -> bool:
    """True when `strategy` (default: the current one) spans several processes."""
    strategy = strategy or tf.distribute.get_strategy()
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and (
        strategy.num_replicas_in_sync > len(strategy.extended.worker_devices)
    )


def is_chief(strategy: tf.distribute.Strategy | None = None) -> bool:
    """Whether this process writes the run folder: the "chief" task, else worker 0.

    Always True outside multi-worker training.
    """
    strategy = strategy or tf.distribute.get_strategy()
    if not is_multi_worker(strategy):
        return True
    resolver = strategy.cluster_resolver
    kind, index = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return kind == "chief" or (kind == "worker" and index == 0 and not has_chief)


def worker_dir(run_dir, strategy: tf.distribute.Strategy | None = None) -> Path:
    """Where this process writes: `run_dir` on the chief, a temporary folder of its own elsewhere.

    Keras' multi-worker advice: every worker runs the same saving code (saving may read
    synchronized variables), but only the chief's files are kept; the others write to their own
    temporary folders so nothing collides on a shared file system. The folder is named after
    the run and the task, so a restarted worker clears what a killed one left; remove it when done.
    """
    if is_chief(strategy):
        return Path(run_dir)
    kind, index = task()
    digest = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"zoo-{kind}{index}-{digest}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def shard(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Shard `dataset` by DATA: every worker reads the whole pipeline and keeps its part of each
    global batch (the FILE default needs a dataset read from several files; in-memory arrays and
    TFDS caches are not).

    Every worker must produce the same elements in the same order, so shuffle with one seed.
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _auto():
    """multi_worker when TF_CONFIG names a cluster, mirrored on several GPUs, else one device."""
    if cluster_workers() > 1:
        return _multi_worker()
    if len(_gpus()) > 1:
        return _mirrored()
    return _one_device()


STRATEGIES = {
    "auto": _auto,
    "cpu": _cpu,
    "one_device": _one_device,
    "mirrored": _mirrored,
    "multi_worker": _multi_worker,
}


def get_strategy(name: str = "auto") -> tf.distribute.Strategy:
    try:
        factory = STRATEGIES[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown strategy {name!r}; valid: {', '.join(STRATEGIES)}"
        ) from None
    return factory()


def split_cpu(replicas: int) -> None:
    """Split the first CPU into `replicas` logical devices (before TensorFlow uses any device).

    Lets `mirrored` run N replicas on a CPU-only machine: how the tests check that N replicas
    train exactly like one.
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == replicas:
        return
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(replicas)]
    )


# ---- precision ----------------------------------------------------------------------------
# --precision name -> Keras dtype policy. Variables stay float32 under the mixed policies; the
# networks' last layers and every loss are float32; float16 needs loss scaling (compile wraps
# every optimizer in LossScaleOptimizer), bfloat16 has float32's range and does not.
PRECISIONS = {
    "float32": "float32",
    "mixed_float16": "mixed_float16",
    "mixed_bfloat16": "mixed_bfloat16",
}


def check_precision(name) -> str:
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; valid: {', '.join(PRECISIONS)}")
    return PRECISIONS[name]


# ---- XLA ------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class JitChoice:
    """Whether train steps are XLA-compiled, and why (logged by `zoo train`, kept in config.json)."""

    enabled: bool
    reason: str

    def __str__(self):
        return f"XLA {'on' if self.enabled else 'off'}: {self.reason}"


JIT_SETTINGS = {"auto": None, "on": True, "off": False, True: True, False: False}


def check_jit_setting(setting):
    if isinstance(setting, str) and setting in JIT_SETTINGS or isinstance(setting, bool):
        return setting
    raise ValueError(f"jit_compile must be one of auto, on, off (or a bool), got {setting!r}")


def choose_jit_compile(setting="auto", strategy: tf.distribute.Strategy | None = None) -> JitChoice:
    """Resolve `jit_compile` ("auto" | "on" | "off" | bool) for train steps under `strategy`.

    "auto" is the fastest choice known to be correct on the device:
    - several replicas: off. XLA compiles the whole step for one device and then cannot reach
      the other replicas' variables (measured: MirroredStrategy + XLA fails on the SeedGenerator
      state "located in device CPU:1 from device CPU:0"), and Keras turns it off there too;
    - one replica on a CPU: off. Measured slower for the default DCGAN on MNIST, batch 64,
      on a shared 2-core x86 CPU: 150 img/s with XLA vs 199 without, and 0.61x and 0.32x in
      two runs of tools/bench_scale.py;
    - one replica on a GPU: on, as Keras' own "auto" does without a strategy: XLA fuses the
      many small element-wise ops of these networks into few kernels. Not yet measured here
      (no GPU in this project's CI): tools/gpu_check.sh measures XLA off and on for every
      family on the GPU at hand; pass "off" where it loses.
    """
    check_jit_setting(setting)
    strategy = strategy or tf.distribute.get_strategy()
    try:
        devices = strategy.extended.worker_devices
    except RuntimeError:  # the default (no) strategy: TensorFlow places ops on GPU:0 if any
        devices = [device.name for device in _gpus()[:1]]
    replicas = strategy.num_replicas_in_sync
    on_gpu = any("GPU" in device.upper() for device in devices)
    forced = JIT_SETTINGS[setting]
    if forced is not None:
        reason = f"jit_compile={setting!r} given"
        if forced and replicas > 1:
            reason += f" (with {replicas} replicas XLA is known to fail; 'auto' turns it off)"
        return JitChoice(forced, reason)
    if replicas > 1:
        return JitChoice(
            False, f"{replicas} replicas: XLA steps cannot reach other replicas' variables"
        )
    if not on_gpu:
        return JitChoice(False, "one CPU device: XLA measured slower than plain TensorFlow here")
    return JitChoice(True, "one GPU: XLA fuses the networks' small ops (tools/gpu_check.sh)")

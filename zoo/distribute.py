"""Pick a tf.distribute strategy by name: "auto" | "cpu" | "one_device" | "mirrored" | "multi_worker".

Build and compile models inside `strategy.scope()`; `fit` then runs one replica per device.
"""

from __future__ import annotations

import json
import os

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
    return tf.distribute.MultiWorkerMirroredStrategy()


def cluster_workers() -> int:
    """Number of workers TF_CONFIG describes (0 when it is unset)."""
    config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    return len(config.get("cluster", {}).get("worker", []))


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

"""Where training and colourisation run: the cluster (TF_CONFIG), the tf.distribute strategy and the
Keras dtype policy."""
import json
import os

import tensorflow as tf

from colorgan.config import Config, UserError


def make_strategy() -> tf.distribute.Strategy:
    """Several machines when TF_CONFIG says so, all local GPUs when there are several, else one device."""
    if tf_config():
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def cpu_bfloat16_flags(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """The CPU's flags for native bfloat16 arithmetic (AVX512_BF16, AMX); none where unknown."""
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [flag for flag in ("avx512_bf16", "amx_bf16") if flag in flags]


def precision_policy(config: Config) -> tuple[str, str]:
    """(Keras dtype policy, why). auto: float16 with loss scaling on a GPU; bfloat16 on a CPU with
    native bfloat16 arithmetic (1.35x faster on AMD Zen 4, with float32's quality at an equal budget:
    bench/README.md); float32 on other CPUs, where emulated bfloat16 and float16 are slower."""
    policies = {"off": "float32", "float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
    if config.mixed_precision != "auto":
        return policies[config.mixed_precision], f"--mixed-precision {config.mixed_precision}"
    if tf.config.list_logical_devices("GPU"):
        return "mixed_float16", "auto: a GPU"
    native = cpu_bfloat16_flags()
    if native:
        return "mixed_bfloat16", f"auto: a CPU with native bfloat16 ({', '.join(native)})"
    return "float32", "auto: a CPU without native bfloat16, where reduced precision is slower"


def tf_config() -> dict:
    """TF_CONFIG as a dict ({} when unset); anything but a JSON object with a cluster and a task of
    the right kinds is a one-line error, before TensorFlow reads it."""
    text = os.environ.get("TF_CONFIG") or ""
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError as error:
        raise UserError(f"TF_CONFIG is not JSON ({error})") from None
    if not (isinstance(value, dict) and isinstance(value.get("cluster"), dict) and isinstance(value.get("task"), dict)
            and isinstance(value["task"].get("index", 0), int)):
        raise UserError('TF_CONFIG must be a JSON object such as {"cluster": {"worker": ["host1:12345", '
                        '"host2:12345"]}, "task": {"type": "worker", "index": 0}}')
    return value


def is_chief() -> bool:
    cluster = tf_config()
    task = cluster.get("task", {})
    return not cluster or task.get("type") in (None, "chief") or (
        task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in cluster.get("cluster", {}))

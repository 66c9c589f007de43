"""Where training and colourisation run: the tf.distribute strategy and the Keras dtype policy."""
import tensorflow as tf

from colorgan import resume
from colorgan.config import Config


def make_strategy() -> tf.distribute.Strategy:
    """Several machines when TF_CONFIG says so, all local GPUs when there are several, else one device."""
    if resume.tf_config():
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

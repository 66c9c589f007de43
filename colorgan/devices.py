"""Where training and colourisation run: the cluster (TF_CONFIG), the tf.distribute strategy and the
Keras dtype policy."""
import contextlib
import json
import os
import re
import signal
import socket
import time

import tensorflow as tf

from colorgan.config import Config, UserError


def make_strategy(join_timeout: float = 900.0) -> tf.distribute.Strategy:
    """Several machines when TF_CONFIG says so, all local GPUs when there are several, else one device."""
    if tf_config():
        return _join(tf_config(), join_timeout)
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


# ONEDNN_MAX_CPU_ISA values that leave oneDNN without bfloat16 (AVX2 imitates an AVX2 host on a bigger CPU):
# TensorFlow still routes bfloat16 to oneDNN by the CPU's flags, and oneDNN then aborts
_ISAS_WITHOUT_BFLOAT16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def cpu_bfloat16_flags(cpuinfo: str = "/proc/cpuinfo") -> list[str]:
    """The CPU's flags for native bfloat16 arithmetic (AVX512_BF16, AMX); none where unknown or where
    ONEDNN_MAX_CPU_ISA keeps oneDNN from them."""
    if os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper() in _ISAS_WITHOUT_BFLOAT16:
        return []
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
    cluster, task = value["cluster"], value["task"]
    kinds = set(cluster) | {task.get("type", "worker")}
    if not kinds <= {"chief", "worker"}:  # ps and evaluator tasks are other strategies' parts
        raise UserError(f"TF_CONFIG: colorgan trains with MultiWorkerMirroredStrategy, whose tasks are workers and "
                        f"at most one chief; not {', '.join(sorted(kinds - {'chief', 'worker'}))}")
    if not all(isinstance(a, list) and a and all(isinstance(x, str) and re.fullmatch(r".+:\d{1,5}", x) for x in a)
               for a in cluster.values()):
        raise UserError('TF_CONFIG: each task type of "cluster" lists "host:port" addresses')
    kind, index = task.get("type", "worker"), task.get("index", 0)
    if not 0 <= index < len(cluster.get(kind, [])):
        raise UserError(f"TF_CONFIG: task {kind} {index} is not in the cluster, which has "
                        f"{len(cluster.get(kind, []))} {kind}(s), numbered from 0")
    return value


def _join(cluster: dict, timeout: float) -> tf.distribute.Strategy:
    """MultiWorkerMirroredStrategy, once every task of the cluster has started. Its constructor waits
    for the others inside TensorFlow, holding the interpreter, where neither a timeout nor SIGTERM
    (which TensorFlow catches for its preemption handler) can end it. So the tasks first meet here:
    each worker listens on its own port until the leader (the chief, or worker 0) is up, and the
    leader waits until all of them listen; only then do they enter TensorFlow's wait, which is short."""
    tasks = {(kind, i): address for kind, addresses in cluster["cluster"].items()
             for i, address in enumerate(addresses)}
    me = (cluster["task"].get("type", "worker"), cluster["task"].get("index", 0))
    leader = ("chief", 0) if ("chief", 0) in tasks else ("worker", 0)
    others = [address for task, address in tasks.items() if task != me]
    print(f"TF_CONFIG: {me[0]} {me[1]} at {tasks[me]}, waiting for the {len(others)} other(s) "
          f"({', '.join(others[:4])}{' ...' if len(others) > 4 else ''}) to start, at most {timeout:g} s; "
          "Ctrl-C stops", flush=True)

    def stop(signum, frame):
        print(f"\n{signal.Signals(signum).name} while waiting for the other workers: stopped", flush=True)
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        deadline = time.monotonic() + timeout
        if me == leader:
            _check_port_free(tasks[me])
            _wait_for(others, deadline, timeout)
        else:
            with _listening(tasks[me]):
                _wait_for([tasks[leader]], deadline, timeout)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return tf.distribute.MultiWorkerMirroredStrategy()


def _wait_for(addresses: list[str], deadline: float, timeout: float) -> None:
    waiting = list(addresses)
    while waiting:
        host, _, port = waiting[0].rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
            waiting.pop(0)
        except OSError:
            if time.monotonic() > deadline:
                raise UserError(f"TF_CONFIG: {waiting[0]} did not start within {timeout:g} s: start train.py on every "
                                "task, each with its own task index (or raise --join-timeout)") from None
            time.sleep(0.2)


@contextlib.contextmanager
def _listening(address: str):
    """This task's port, open (for the leader to see it started) until TensorFlow takes it over."""
    host, _, port = address.rpartition(":")
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family) as placeholder:
        placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            placeholder.bind(("", int(port)))
        except OSError as error:
            raise UserError(f"TF_CONFIG: this task's address {address}: port {port} cannot be used "
                            f"({error.strerror or error}); another process holds it, or give another port") from None
        placeholder.listen()
        yield


def _check_port_free(address: str) -> None:
    with _listening(address):
        pass


def is_chief() -> bool:
    cluster = tf_config()
    task = cluster.get("task", {})
    return not cluster or task.get("type") in (None, "chief") or (
        task.get("type") == "worker" and task.get("index", 0) == 0 and "chief" not in cluster.get("cluster", {}))

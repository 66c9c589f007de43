"""Stopping cleanly: SIGINT / SIGTERM end a run after the current step with a checkpoint, and on
several workers TensorFlow's preemption handler makes every worker save at the same step."""
import contextlib
import os
import shutil
import signal
import sys

import tensorflow as tf

from colorgan.devices import is_chief
from colorgan.resume import save


class Stop:
    """SIGINT / SIGTERM ask the loop to stop after the current step, save, and exit.

    coordinated: several workers, whose SIGTERM TensorFlow's preemption handler watches
    (coordinate_preemption); SIGINT is passed on to it as SIGTERM.
    """

    def __init__(self, coordinated: bool = False):
        self.signal, self.coordinated, self.previous = None, coordinated, {}
        for sig in (signal.SIGINT,) if coordinated else (signal.SIGINT, signal.SIGTERM):
            self.previous[sig] = signal.signal(sig, self.handle)

    def handle(self, signum, frame):
        if self.signal is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name
        if self.coordinated:
            print(f"\n{self.signal}: every worker saves at the same step, then stops", flush=True)
            os.kill(os.getpid(), signal.SIGTERM)  # what the preemption handler watches
        else:
            print(f"\n{self.signal}: saving a checkpoint after this step, then stopping", flush=True)

    def restore(self):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def finishing(what: str):
    """After the last checkpoint: SIGINT or SIGTERM stop the writing of what with one line (its
    temporary file removed, as every atomic write does) and the signal's exit status."""
    def handle(signum, frame):
        print(f"\n{signal.Signals(signum).name} while writing {what}: stopped; the last checkpoint is whole, and "
              "the same command writes them again", flush=True)
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def interruptible():
    """Ctrl-C stops the block even where Python swallows the KeyboardInterrupt it raises (in a
    __del__ or a callback, after an "Exception ignored" traceback): the signal is also recorded,
    and raised again once the block returns; those tracebacks are not printed."""
    received = []

    def handle(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt

    def unraisable(info):
        if not issubclass(info.exc_type, KeyboardInterrupt):
            hook(info)

    previous, hook = signal.signal(signal.SIGINT, handle), sys.unraisablehook
    sys.unraisablehook = unraisable
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = hook
    if received:
        raise KeyboardInterrupt


class Preempted(Exception):
    """A worker got SIGTERM, and every worker has saved a checkpoint at the same step."""


def coordinate_preemption(strategy, checkpoint, manager, step, run_dir: str):
    """On several workers, TensorFlow's PreemptionCheckpointHandler (None otherwise: Stop does it).

    A SIGTERM to any worker makes every worker save at the same step, with its own manager
    (numbered by step), and raise Preempted: a worker that stopped alone would leave the others
    waiting in the next all-reduce. It watches SIGTERM from its creation on (before, TensorFlow
    ignores it) and restores the newest checkpoint of the chief's folder on every worker.
    """
    if not (isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
            and strategy.cluster_resolver.cluster_spec().jobs):
        return None

    def stop():
        raise Preempted

    termination = tf.distribute.experimental.TerminationConfig(
        exit_fn=stop, save_fn=lambda: save(manager, int(step.numpy())))
    return tf.distribute.experimental.PreemptionCheckpointHandler(
        strategy.cluster_resolver, checkpoint, os.path.join(run_dir, "checkpoints"), termination)


def end_preemption(handler, strategy, run_dir: str) -> None:
    """Stop the handler's watcher threads while every worker is still up and remove the folder it
    made for a non-chief's saves, unused here. TensorFlow stops the threads only in the handler's
    __del__, which never runs while they hold it: these are the two calls it makes (TF 2.21)."""
    if handler is None:
        return
    handler._stop_cluster_wise_termination_watcher_thread()
    handler._stop_poll_termination_signal_thread()
    if not is_chief():
        shutil.rmtree(os.path.join(run_dir, f"workertemp_{strategy.cluster_resolver.task_id}"), ignore_errors=True)

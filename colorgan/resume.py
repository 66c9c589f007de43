"""Run folders and checkpoints: one train.py per folder, refuse a run of other networks, move an
earlier run aside when asked, and resume from the newest checkpoint that restores. Nothing is
overwritten or deleted silently."""
import contextlib
import dataclasses
import fcntl
import glob
import json
import os
import shutil
import time

import tensorflow as tf

from colorgan import files, runs
from colorgan.devices import is_chief
from colorgan.config import (ARCHITECTURE, Config, UserError, check_architecture, differences, first_line,
                             load_config, on_run)


class TrainingError(UserError):
    """Training cannot go on: a NaN loss, or a checkpoint that does not fit."""


@contextlib.contextmanager
def locked(config: Config):
    """Hold the run folder for this process: a second train.py on it stops with one line instead of
    racing for its checkpoints. An flock on .<name>.lock beside the folder, which the kernel releases
    when the process ends however it ends, so a killed run leaves no stale lock. Only the chief
    locks: the other workers of a multi-worker run share the folder by design."""
    if shipped := runs.shipped_at(config.run_dir):
        inside = os.path.realpath(config.run_dir) != os.path.realpath(shipped.path)
        raise TrainingError(f"{config.run_dir} is {'inside ' if inside else ''}checkpoints/{shipped.name}, a model "
                            "that ships with colorgan, not a place to train in: choose another --checkpoints-path "
                            "(or --name)")
    if os.path.exists(config.checkpoints_path) and not os.path.isdir(config.checkpoints_path):
        raise TrainingError(f"--checkpoints-path {config.checkpoints_path} is a file: give a folder")
    if not is_chief():
        yield
        return
    os.makedirs(config.checkpoints_path, exist_ok=True)
    path = os.path.join(config.checkpoints_path, f".{config.name}.lock")
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise TrainingError(f"{config.run_dir} is in use by another train.py (pid {f.read().strip() or '?'}): "
                                "wait for it to finish, or stop it first") from None
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            if not os.path.isdir(config.run_dir):  # a refused command: nothing of it stays, its lock neither
                os.remove(path)
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def removed_unless_trained(run_dir: str):
    """A run folder this command creates is removed again if the command fails before anything worth
    keeping (a checkpoint, a trained step's history) was written: a refused run blocks no name."""
    created = is_chief() and not os.path.exists(run_dir)
    try:
        yield
    except BaseException:
        if created and os.path.isdir(run_dir) and not has_checkpoint(run_dir) and not earlier_run(run_dir):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def prepare(config: Config, fresh: bool) -> str:
    """Check config.run_dir before anything is written (moving an earlier run aside when fresh);
    returns this process's folder: the run's, or another worker's own below it."""
    chief = is_chief()
    if fresh and chief:
        move_aside(config.run_dir)
    check_config(config, config.run_dir)
    if chief:  # the folder is locked: every temporary file in it is a killed process's
        files.remove_debris(config.run_dir)
    if chief and not has_checkpoint(config.run_dir) and earlier_run(config.run_dir):
        raise TrainingError(f"{config.run_dir} holds an earlier run ({', '.join(earlier_run(config.run_dir))}) "
                            "but no checkpoint to resume from: pass --fresh to move it aside and start anew, "
                            "or choose another --name")
    # Every worker writes checkpoints (saving is collective); only the chief's are kept.
    run_dir = config.run_dir if chief else os.path.join(config.run_dir, f".worker-{os.getpid()}")
    os.makedirs(run_dir, exist_ok=True)
    return run_dir


def has_checkpoint(run_dir: str) -> bool:
    return bool(checkpoint_paths(os.path.join(run_dir, "checkpoints")))


def checkpoint_paths(checkpoint_dir: str) -> list[str]:
    """The checkpoints in the folder, newest first: those its state file ("checkpoint") names and
    those whose files (ckpt-N.index) are there, so that a state file that is empty, garbled or
    names checkpoints that are gone hides none of them."""
    found = {}
    for index in glob.glob(os.path.join(glob.escape(checkpoint_dir), "ckpt-*.index")):
        found[index[:-len(".index")]] = None
    try:
        state = tf.train.get_checkpoint_state(checkpoint_dir)
        found.update(dict.fromkeys(state.all_model_checkpoint_paths if state else []))
    except Exception:  # noqa: BLE001 (a garbled state file: the files above are what there is)
        pass
    number = lambda path: int(path.rsplit("-", 1)[1]) if path.rsplit("-", 1)[-1].isdigit() else -1  # noqa: E731
    return sorted(found, key=number, reverse=True)


def read_every_tensor(path: str) -> dict:
    """{name: dtype} of the checkpoint at path, after reading each of its tensors (the data
    iterator's too), so that a flipped bit or a cut file fails here and not steps later."""
    dtypes = tf.train.load_checkpoint(path).get_variable_to_dtype_map()
    names = sorted(dtypes)
    tf.raw_ops.RestoreV2(prefix=path, tensor_names=names, shape_and_slices=[""] * len(names),
                         dtypes=[dtypes[n] for n in names])
    return dtypes


def point_state_file_at(checkpoint_dir: str, path: str) -> None:
    """Make the state file name path, and the older checkpoints whose files are there, as
    tf.train.CheckpointManager reads it: it fails on a garbled one and would keep a stale one."""
    try:
        state = tf.train.get_checkpoint_state(checkpoint_dir)
    except Exception:  # noqa: BLE001 (garbled: rewritten below)
        state = None
        print(f"note: {os.path.join(checkpoint_dir, 'checkpoint')} could not be read; it now names {path}")
    if state is None or state.model_checkpoint_path != path:
        paths = [p for p in checkpoint_paths(checkpoint_dir) if os.path.exists(p + ".index")]
        kept = paths[paths.index(path):]
        # names relative to the folder, as the manager writes them: the folder may be given relative to here
        tf.compat.v1.train.update_checkpoint_state(checkpoint_dir, os.path.basename(path),
                                                   all_model_checkpoint_paths=[os.path.basename(p)
                                                                               for p in reversed(kept)])


def check_config(config: Config, run_dir: str) -> None:
    """Refuse a run folder of other networks; say which settings changed on resume."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path):
        return
    previous = load_config(path)  # a broken one is an error, never overwritten unread
    if not (has_checkpoint(run_dir) or earlier_run(run_dir)):
        return  # a run that never trained: its config.json is rewritten
    on_run(previous, dataclasses.asdict(config), run_dir)
    changed = differences(previous, config)
    latest = next(iter(checkpoint_paths(os.path.join(run_dir, "checkpoints"))), None)
    if "batch_size" in changed and latest:
        try:
            done = int(tf.train.load_variable(latest, "epoch_step/.ATTRIBUTES/VARIABLE_VALUE"))
        except Exception:  # unreadable: restore_newest says which, and why
            done = 0
        if done:  # its saved place in the data counts batches of the old size
            raise TrainingError(f"{run_dir} stopped {done} steps into an epoch at --batch-size {previous.batch_size}: "
                                f"resume it with --batch-size {previous.batch_size}, or start another --name")
    if changed:
        print("resuming with changed settings: " +
              ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items()))


def save(manager: tf.train.CheckpointManager, step: int, size: int = 0) -> str:
    """manager.save at step. A disk that fills up is one line naming the folder, the space free and
    the space a checkpoint takes (size, in bytes, or the last one's); the half-written ckpt-N_temp is
    removed and the last good checkpoint stays as it was."""
    try:
        return manager.save(checkpoint_number=step)
    except (tf.errors.ResourceExhaustedError, OSError) as error:
        for temporary in glob.glob(os.path.join(manager.directory, f"ckpt-{step}_temp*")):
            shutil.rmtree(temporary, ignore_errors=True)
        last = manager.latest_checkpoint
        size = sum(os.path.getsize(p) for p in glob.glob(f"{last}.*")) if last else size
        reason = "no space left on device" if "No space left" in str(error) else first_line(error)
        raise TrainingError(f"cannot write checkpoint {step} in {manager.directory}: {reason}; "
                            f"{shutil.disk_usage(manager.directory).free / 2**20:.1f} MB free, a checkpoint takes "
                            f"{size / 2**20:.1f} MB. The last good checkpoint is {last}.") from None


def restore(checkpoint: tf.train.Checkpoint, path: str, partial: bool = False) -> None:
    """Restore the checkpoint's objects from path, or fail with a message that names the path."""
    try:
        status = checkpoint.read(path).assert_existing_objects_matched()
        if partial:
            status.expect_partial()
    except Exception as error:  # TF raises many kinds on a corrupt or foreign file
        raise TrainingError(f"cannot restore checkpoint {path}: it is corrupt or of another architecture "
                            f"({first_line(error)})") from None


# ARCHITECTURE fields that checkpoints record only where they differ from these (the paper's)
_LATER = {"width": 1.0, "spectral_norm": False}


def architecture(config: Config) -> str:
    """The networks a checkpoint holds, as flags (what its "architecture" variable records)."""
    names = [n for n in ARCHITECTURE if n not in _LATER or getattr(config, n) != _LATER[n]]
    return ", ".join(f"--{name.replace('_', '-')} {getattr(config, name)}" for name in names)


def recorded_architecture(path: str) -> dict:
    """{field: value} of the networks the checkpoint at path holds."""
    text = tf.train.load_variable(path, "architecture/.ATTRIBUTES/VARIABLE_VALUE").decode()
    recorded = dict(_LATER)
    for flag in text.split(", "):
        name, value = flag.removeprefix("--").split(" ", 1)
        name = name.replace("-", "_")
        kind = type(Config.__dataclass_fields__[name].default)
        recorded[name] = value == "True" if kind is bool else kind(value)
    return recorded


def check_format(names, path: str) -> None:
    """Refuse, in one line, a checkpoint in a format of colorgan before 2026-12-04 (no record of its
    networks, a data iterator of tuples, float16's Adam inside its loss scale)."""
    if ("architecture/.ATTRIBUTES/VARIABLE_VALUE" not in names or any(n.startswith("iterator/") for n in names)
            or any("/inner_optimizer/" in n for n in names)):
        raise TrainingError(f"{path} was written by colorgan before 2026-12-04, whose checkpoints this version does "
                            "not read: resume it with colorgan at commit ea1a17d, or start anew with --fresh")


def restore_newest(state, config: Config, checkpoint_dir: str) -> str | None:
    """Restore the newest checkpoint that restores into state, a run of config; returns its path (None:
    there is none).

    A newer one that cannot be read (missing or corrupt files) is skipped with a note; one of
    another architecture or an old format is an error, as are checkpoints of which none restores.
    """
    problems = []
    for path in checkpoint_paths(checkpoint_dir):
        try:
            names = read_every_tensor(path)
        except Exception as error:  # TF raises many kinds on missing, truncated or altered files
            problems.append(f"{path}: {first_line(error)}")
            continue
        check_format(names, path)
        try:
            check_architecture(recorded_architecture(path), config, path)
        except UserError as error:
            raise TrainingError(str(error)) from None
        objects = state.checkpointed()
        if "generator_ema" in objects and not any(n.startswith("generator_ema/") for n in names):
            del objects["generator_ema"]  # --ema turned on for a run without it: the average starts here
        for scale in ("gen_loss_scale", "disc_loss_scale"):
            if scale in objects and not any(n.startswith(f"{scale}/") for n in names):
                del objects[scale]  # saved in bfloat16 or float32, resumed in float16: the scale starts afresh
        try:
            # partial: it may hold more (the data iterator, the preemption handler's count)
            restore(tf.train.Checkpoint(**objects), path, partial=True)
        except TrainingError as error:
            problems.append(str(error))
            continue
        for problem in problems:
            print(f"note: skipped a newer checkpoint that cannot be read: {problem}", flush=True)
        if state.generator_ema is not None and "generator_ema" not in objects:
            state.generator_ema.set_weights([w.numpy() for w in state.generator.weights])
        point_state_file_at(checkpoint_dir, path)
        return path
    if problems:
        raise TrainingError("no checkpoint could be restored: " + "; ".join(problems))
    return None


# What train.py writes before the first step: a folder holding only these never trained
BEFORE_TRAINING = ("config.json", "logs")


def earlier_run(run_dir: str) -> list[str]:
    """What an earlier run that trained left in run_dir (other workers' folders, empty folders and
    what is written before the first step do not count)."""
    if not os.path.isdir(run_dir):
        return []
    return sorted(name for name in os.listdir(run_dir)
                  if not name.startswith(".worker-")  # an empty folder holds nothing
                  and name not in BEFORE_TRAINING
                  and not (os.path.isdir(os.path.join(run_dir, name)) and not os.listdir(os.path.join(run_dir, name))))


def move_aside(run_dir: str) -> None:
    if earlier_run(run_dir):
        aside = f"{os.path.normpath(run_dir)}.{time.strftime('%Y%m%d-%H%M%S')}"
        os.replace(run_dir, aside)
        print(f"--fresh: moved the earlier run to {aside}", flush=True)


def drop_history_after(run_dir: str, step: int) -> None:
    """history.jsonl rows past the restored step were logged by a process killed before its next
    checkpoint: the resumed run logs those steps again. A half-written last row goes too."""
    path = os.path.join(run_dir, "history.jsonl")
    if os.path.exists(path):
        rows = [row for row in files.read_history(path) if row["step"] <= step]
        files.write_text(path, "".join(json.dumps(row) + "\n" for row in rows))

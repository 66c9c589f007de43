"""Writing files so that a reader never sees half of one and a planted link is never followed."""
import contextlib
import json
import os
import re
import tempfile
import time

from colorgan.errors import UserError

MARKER = ".colorgan-partial-"  # in every temporary name atomic_path makes, and in no other
_UMASK = os.umask(0o022)  # read once, at import, while no other thread can create a file meanwhile
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str):
    """Yield a fresh temporary name beside path for a writer to fill; rename it onto path when the
    block succeeds, remove it when it fails.

    The name is random and created exclusively, so a symbolic link planted at a predictable
    "path.tmp" cannot redirect the write; os.replace swaps a link at path itself, not its target.
    It keeps path's extension: Keras and matplotlib choose the format by it.
    """
    refuse_special(path)
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    suffix = ".tmp" + os.path.splitext(name)[1]
    # ".", the name, the marker, mkstemp's 8 characters, the suffix: within the file system's limit for any legal name
    keep = max(1, _name_max(folder) - 9 - len(MARKER) - len(os.fsencode(suffix)))
    prefix = "." + os.fsencode(name)[:keep].decode(errors="ignore") + MARKER
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=suffix)
    os.close(fd)
    os.chmod(temporary, 0o666 & ~_UMASK)  # as open() would have made it, not mkstemp's 0600
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


# atomic_path's temporary names: ".", the name, the marker, mkstemp's 8 characters, ".tmp", the
# extension. Only a name with the marker is ever removed as debris: a user's own ".x.12345678.tmp"
# in an output folder is not colorgan's.
DEBRIS = re.compile(r"\..+" + re.escape(MARKER) + r"[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?")


def remove_debris(folder: str, min_age_s: float = 0.0) -> list[str]:
    """Remove the temporary files that a killed atomic write left below folder (those older than
    min_age_s: a younger one may be another process's write in progress); returns their paths."""
    removed = []
    for directory, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(directory, name)
            with contextlib.suppress(OSError):
                if (DEBRIS.fullmatch(name) and os.path.isfile(path)
                        and time.time() - os.path.getmtime(path) >= min_age_s):
                    os.remove(path)
                    removed.append(path)
    if removed:
        print(f"note: removed {len(removed)} partial file(s) an interrupted write left: {', '.join(removed[:3])}"
              f"{' ...' if len(removed) > 3 else ''}", flush=True)
    return removed


def refuse_special(path: str, what: str = "") -> None:
    """An output that exists must be a regular file (or a link to one): a device, a FIFO or a
    folder would be replaced by the write, or never end a read."""
    if os.path.exists(path) and not os.path.isfile(path):
        raise UserError(f"cannot write {what + ' ' if what else ''}{path}: it is not a regular file (a folder, "
                        "device or FIFO); give the name of a file")


def check_writable(path: str, what: str) -> None:
    """Before the work: the folder path (or, if it does not exist yet, the nearest folder above it,
    where it would be made) takes a file. A probe file is written there and removed."""
    folder = os.path.abspath(path)
    while not os.path.isdir(folder):
        if os.path.exists(folder):
            raise UserError(f"cannot write {what} {path}: {folder} is a file, not a folder")
        folder = os.path.dirname(folder)
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".colorgan-probe-")
        os.close(fd)
        os.remove(probe)
    except OSError as error:
        raise UserError(f"cannot write {what} {path}: {error.strerror or error} ({folder})") from None


def _name_max(folder: str) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def write_text(path: str, text: str) -> str:
    with atomic_path(path) as temporary, open(temporary, "w") as f:
        f.write(text)
    return path


def read_history(path: str) -> list[dict]:
    """The rows of a history.jsonl; a row cut short (what a SIGKILL mid-append leaves) is left out."""
    rows = []
    with open(path) as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int):
                rows.append(row)
    return rows

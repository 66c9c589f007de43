"""Writing files so that a reader never sees half of one and a planted link is never followed."""
import contextlib
import json
import os
import tempfile

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
    folder, name = os.path.split(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp" + os.path.splitext(name)[1])
    os.close(fd)
    os.chmod(temporary, 0o666 & ~_UMASK)  # as open() would have made it, not mkstemp's 0600
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(temporary)
        raise


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

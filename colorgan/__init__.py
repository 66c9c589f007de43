"""colorgan: image colourisation with conditional GANs (Nazeri, Ng & Ebrahimi 2018) in TF2 / Keras 3."""
import os
import re
import sys
import tempfile

# TF 2.21 enables oneDNN only on CPUs with VNNI/AMX; without it convolution training on other
# x86 CPUs runs 2-5x slower (measured: bench/README.md). This must happen before TensorFlow is
# imported, so it lives here: entry scripts import colorgan first. A user's own settings win.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# TensorFlow's C++ log: errors reach the user as Python exceptions; TF_CPP_MIN_LOG_LEVEL=0 shows it all.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# "I0000 00:00:1796167284.004767   25595 port.cc:153] ..." and absl's banner before its log is set up
_CPP_LOG_LINE = re.compile(r"([IWEF])\d{4} [\d:.]+\s+\d+ [^ \]]+:\d+\] ")
_ABSL_BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def _shown(line: str, level: int) -> bool:
    if line.startswith(_ABSL_BANNER):
        return level < 1
    match = _CPP_LOG_LINE.match(line)
    return match is None or "IWEF".index(match.group(1)) >= level


def _import_tensorflow() -> None:
    """Import TensorFlow with its loading-time log lines filtered by TF_CPP_MIN_LOG_LEVEL: its
    libraries write them before absl's logging reads that level, so it alone does not hide them.
    Everything else written to stderr meanwhile (Python warnings, a failed import) is passed on."""
    try:
        level = int(os.environ["TF_CPP_MIN_LOG_LEVEL"])
        saved = os.dup(2)
    except (ValueError, OSError):
        import tensorflow  # noqa: F401
        return
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            lines = capture.read().decode(errors="replace").splitlines(keepends=True)
            os.write(2, "".join(line for line in lines if _shown(line, level)).encode())


_import_tensorflow()

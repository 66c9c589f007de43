"""colorgan: image colourisation with conditional GANs (Nazeri, Ng & Ebrahimi 2018) in TF2 / Keras 3."""
import os

# TF 2.21 enables oneDNN only on CPUs with VNNI/AMX; without it convolution training on other
# x86 CPUs runs 2-5x slower (../shared/STACK_NOTES.md). This must happen before TensorFlow is
# imported, so it lives here: entry scripts import colorgan first. A user's own setting wins.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

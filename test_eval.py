"""Evaluate a trained run on the test split, or colourise your own photos (see --help)."""
import sys

import colorgan  # noqa: F401  (first: it sets TensorFlow's environment)
from colorgan.config import UserError


def main(argv=None):
    from colorgan import evaluation
    evaluation.main(argv)


if __name__ == "__main__":
    try:
        main()
    except UserError as error:
        sys.exit(f"error: {error}")

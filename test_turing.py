"""The visual Turing test of a trained run as a local web page:
python test_turing.py --checkpoints-path checkpoints --name CGAN --turing-test-delay 2 (see --help).
python test_turing.py --summarize checkpoints/CGAN/turing.jsonl prints the fooled rates."""
import argparse
import sys

import colorgan  # noqa: F401  (first: it sets TensorFlow's environment)
from colorgan import turing
from colorgan.config import UserError, add_config_flags, make_config, split_flags


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser)
    turing.add_flags(parser)
    given, extra = split_flags(parser.parse_args(argv))  # config flags are only there when given
    turing.main(make_config(given), set(given), argparse.Namespace(**extra))


if __name__ == "__main__":
    try:
        main()
    except UserError as error:
        sys.exit(f"error: {error}")

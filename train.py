"""Train the colourisation GAN: python train.py --dataset cifar10 --lr 3e-4 (see --help)."""
import argparse
import sys

import colorgan  # noqa: F401  (first: it sets TensorFlow's environment)
from colorgan.config import UserError, add_config_flags, make_config, split_flags


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    add_config_flags(parser)
    parser.add_argument("--fresh", action="store_true",
                        help="start anew: move an earlier run in <checkpoints-path>/<name> aside, to <name>.<date-time>")
    given, extra = split_flags(parser.parse_args(argv))
    config = make_config(given)
    from colorgan import training
    training.train(config, fresh=extra["fresh"])


if __name__ == "__main__":
    try:
        main()
    except UserError as error:
        sys.exit(f"error: {error}")

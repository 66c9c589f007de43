"""Train the colourisation GAN: python train.py --dataset cifar10 --lr 3e-4 (see --help)."""
import sys

import colorgan  # noqa: F401  (first: it sets TensorFlow's environment)
from colorgan.config import UserError, parse_args


def main(argv=None):
    config = parse_args(argv, description=__doc__)
    from colorgan import training
    training.train(config)


if __name__ == "__main__":
    try:
        main()
    except UserError as error:
        sys.exit(f"error: {error}")

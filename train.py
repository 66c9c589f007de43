"""Train the colourisation GAN: python train.py --dataset cifar10 --lr 3e-4 (see --help)."""
from colorgan import training
from colorgan.config import run_command

main = training.main

if __name__ == "__main__":
    run_command(main)

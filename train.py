"""Train the colourisation GAN: python train.py --dataset cifar10 --lr 3e-4 (see --help)."""
from _entry import command

main = command("colorgan.training")

if __name__ == "__main__":
    from colorgan.config import run_command
    run_command(main)

"""Evaluate a trained run on the test split, or colourise your own photos (see --help)."""
from colorgan import evaluation
from colorgan.config import run_command

main = evaluation.main

if __name__ == "__main__":
    run_command(main)

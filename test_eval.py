"""Evaluate a trained run on the test split, or colourise your own photos (see --help)."""
from _entry import command

main = command("colorgan.evaluation")

if __name__ == "__main__":
    from colorgan.config import run_command
    run_command(main)

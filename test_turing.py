"""The visual Turing test of a trained run as a local web page:
python test_turing.py --checkpoints-path checkpoints --name CGAN --turing-test-delay 2 (see --help).
python test_turing.py --summarize checkpoints/CGAN/turing.jsonl prints the fooled rates."""
from colorgan import turing
from colorgan.config import run_command

main = turing.main

if __name__ == "__main__":
    run_command(main)

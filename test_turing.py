"""The visual Turing test of a trained run as a local web page:
python test_turing.py --checkpoints-path checkpoints --name CGAN --turing-test-delay 2 (see --help).
python test_turing.py --summarize checkpoints/CGAN/turing.jsonl prints the fooled rates."""
from _entry import command

main = command("colorgan.turing")

if __name__ == "__main__":
    from colorgan.config import run_command
    run_command(main)

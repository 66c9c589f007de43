"""The paper's visual Turing test as a local web page (or the authors' matplotlib window).

Each trial shows a test image's real colours and the model's colourisation of its gray version,
in random order; the participant picks the one they believe is real. The fooled rate is the share
of trials in which they pick the colourisation. Every answer is appended to a JSON-lines file and
fsynced the moment it arrives, so a crash loses nothing and a restarted server resumes each
participant where they stopped. The browser learns nothing about which image is real: random ids,
the same alt text, and uncompressed PNGs of the same byte size.
"""
import math
import os
import secrets
import time

from colorgan import files
from colorgan.config import RUN_FLAGS, UserError, on_run, parse_command
from colorgan.runs import WHICH_MODEL
from colorgan.turing.desktop import run_desktop
# the package's API, as the tests and test_turing.py use it
from colorgan.turing.server import NAME, Handler, Server, serve  # noqa: F401
from colorgan.turing.stats import (ROW_TYPES, SIDES, format_summary, group_stats, read_results,  # noqa: F401
                                   report, summary_chart, wilson)
from colorgan.turing.trials import GRACE, Item, TuringTest, prepare_items, to_png  # noqa: F401


def add_flags(parser):
    group = parser.add_argument_group("visual Turing test")
    group.add_argument("--turing-test-size", type=int, default=100, help="number of trials (test images; at least 1)")
    group.add_argument("--turing-test-delay", type=float, default=0.0,
                       help="seconds a pair stays visible (0: no limit)")
    group.add_argument("--participant", default="", help="name of the participant (web: filled in on the page)")
    group.add_argument("--host", default="127.0.0.1", help="address to serve on (default: loopback only)")
    group.add_argument("--port", type=int, default=8000, help="port to serve on (0: any free port)")
    group.add_argument("--results", default="", help="JSON-lines results file (default: <run>/turing.jsonl; for the "
                       "shipped model output/colorgan-cifar10/turing.jsonl)")
    group.add_argument("--display-size", type=int, default=256, help="side of the shown images in pixels (at least 8)")
    group.add_argument("--ui", choices=("web", "matplotlib"), default="web",
                       help="web page for any number of participants, or the authors' desktop window")
    group.add_argument("--no-browser", action="store_true", help="do not open a browser")
    group.add_argument("--summarize", nargs="+", metavar="RESULTS", help="only print the summary of results files")
    group.add_argument("--chart", default="", help="bar chart PNG of --summarize (default: beside the first file)")


def main(argv=None):
    """python test_turing.py: prepare the trials of a trained run and run the test, or --summarize."""
    given, options = parse_command(argv, __doc__ + "\n" + WHICH_MODEL, add_flags, RUN_FLAGS)
    if options.summarize:
        missing = [p for p in options.summarize if not os.path.isfile(p)]
        if missing:
            raise UserError(f"no results file {missing[0]!r}")
        return report(options.summarize, chart=options.chart)
    if options.display_size < 8 or options.turing_test_size < 1 or not 0 <= options.turing_test_delay < math.inf:
        raise UserError("--display-size must be at least 8, --turing-test-size at least 1 and --turing-test-delay "
                        "a number of seconds, 0 or more")
    if options.participant and not NAME.fullmatch(options.participant):
        raise UserError("--participant: 1-40 letters, digits, spaces or . _ @ -")
    if not 0 <= options.port <= 65535:
        raise UserError(f"--port {options.port}: a port is 0-65535 (0: any free one)")
    if options.results and os.path.isdir(options.results):
        raise UserError(f"--results {options.results} is a folder: give a file (JSON lines)")
    if options.results:
        files.refuse_special(options.results, "--results")
    from colorgan import inference, runs, stopping
    run_dir, work_dir, which = runs.choose_run(given)
    print(which)
    generator, run_config = inference.load_run(run_dir)
    config = on_run(run_config, given, run_dir)  # its own data, or --dataset-path
    results = options.results or os.path.join(work_dir, "turing.jsonl")
    files.check_writable(os.path.dirname(os.path.abspath(results)), "--results")  # before the work
    start = time.time()
    with stopping.interruptible():  # a Ctrl-C here must not end up serving
        items = prepare_items(inference.Colorizer(generator, config), options.turing_test_size, options.display_size)
    print(f"prepared {len(items)} trials in {time.time() - start:.1f} s")
    if not options.results:
        os.makedirs(work_dir, exist_ok=True)
    test = TuringTest(items, results, options.turing_test_delay, model=os.path.basename(os.path.abspath(run_dir)))
    if options.ui == "matplotlib":
        return run_desktop(test, options.participant or "p-" + secrets.token_hex(3))
    serve(test, options.host, options.port, options.participant, not options.no_browser)

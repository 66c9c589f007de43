"""What each entry script does before anything heavy: SIGTERM and Ctrl-C are one line and their
exit status (143, 130) at any moment, the imports of TensorFlow included. Standard library only."""
import importlib
import signal
import sys


def _terminated(signum, frame):
    # SystemExit unwinds like an exception: what is being written is finished or removed on the way
    print(f"\n{signal.Signals(signum).name}: stopped; files written before it are whole", file=sys.stderr, flush=True)
    raise SystemExit(128 + signum)


def command(module: str):
    """module's main(), imported with the handlers in place."""
    signal.signal(signal.SIGTERM, _terminated)
    try:
        return importlib.import_module(module).main
    except KeyboardInterrupt:
        print("\ninterrupted while starting", file=sys.stderr, flush=True)
        raise SystemExit(130) from None

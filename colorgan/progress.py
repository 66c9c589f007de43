"""Progress lines of long work: updated in place in a terminal; in a log (stdout not a terminal) one
line every few seconds at most, so that a log of hours stays readable."""
import sys
import time


class Progress:
    def __init__(self, every_s: float = 5.0, stream=None):
        self.stream = stream or sys.stdout
        self.every_s, self.last, self.shown, self.pending = every_s, -float("inf"), "", None
        self.terminal = self.stream.isatty()

    def show(self, text: str, done: bool = False) -> None:
        """text as the current progress; done: the last one, which always shows and ends the line."""
        self.pending = None if done else text
        now = time.monotonic()
        if self.terminal:
            print("\r" + text.ljust(len(self.shown)), end="\n" if done else "", file=self.stream, flush=True)
            self.shown = "" if done else text
        elif done or now - self.last >= self.every_s:
            print(text, file=self.stream, flush=True)
            self.last = now

    def finish(self) -> None:
        """Show the last progress as done, if it was not (work that ended short of its total)."""
        if self.pending is not None:
            self.show(self.pending, done=True)

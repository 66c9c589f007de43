"""Progress lines: in place in a terminal, a line every few seconds at most in a log."""
import io

from colorgan import progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_updates_one_line_in_place_and_a_log_gets_few_lines(monkeypatch):
    clock = iter(range(0, 1000, 1))  # one second a call
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    log, terminal = io.StringIO(), Terminal()
    for stream in (log, terminal):
        line = progress.Progress(every_s=5, stream=stream)
        for n in range(1, 21):
            line.show(f"done {n}/20", done=n == 20)
    assert log.getvalue().splitlines() == ["done 1/20", "done 6/20", "done 11/20", "done 16/20", "done 20/20"]
    shown = terminal.getvalue()
    assert shown.count("\n") == 1 and shown.count("\r") == 20 and shown.endswith("done 20/20\n")


def test_work_that_ends_short_of_its_total_still_ends_its_line():
    terminal = Terminal()
    line = progress.Progress(stream=terminal)
    line.show("done 3/5")
    line.finish()
    line.finish()  # once
    assert terminal.getvalue() == "\rdone 3/5\rdone 3/5\n"

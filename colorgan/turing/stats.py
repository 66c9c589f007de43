"""Statistics of the visual Turing test: fooled rates with Wilson intervals, a table and a chart."""
import json
import math
import os
import sys
import threading

import numpy as np

from colorgan import files
from colorgan.errors import UserError

SIDES = ("left", "right")
Z95 = 1.959964

ROW_TYPES = {"participant": str, "trial": int, "image": str, "class": str, "real_side": str,
             "choice": (str, type(None)), "fooled": bool, "response_s": (int, float)}


def read_results(paths: list[str]) -> list[dict]:
    """The rows of results files; a malformed line (a crash mid-write) is skipped with a warning."""
    rows = []
    for path in paths:
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                    ok = isinstance(row, dict) and all(isinstance(row.get(k), t) for k, t in ROW_TYPES.items())
                    ok = ok and row["real_side"] in SIDES and row["choice"] in (*SIDES, None)
                    # NaN would poison every mean
                    ok = ok and math.isfinite(row["response_s"]) and row["response_s"] >= 0
                except ValueError:
                    ok = False
                if not ok:
                    print(f"warning: {path}:{number}: skipped a malformed row", file=sys.stderr)
                    continue
                rows.append(row)
    return rows


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k / n: sensible near 0 and 1 and for small n."""
    if n == 0:
        return math.nan, math.nan
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def group_stats(rows: list[dict]) -> dict:
    answered = [r for r in rows if r["choice"] is not None]
    fooled = sum(r["choice"] != r["real_side"] for r in answered)
    n, a = len(rows), len(answered)
    return {"trials": n, "answered": a, "fooled": fooled,
            "rate": fooled / n if n else math.nan, "interval": wilson(fooled, n),  # no answer = not fooled
            "rate_answered": fooled / a if a else math.nan, "interval_answered": wilson(fooled, a),
            "mean_s": sum(r["response_s"] for r in answered) / a if a else math.nan}


def _groups(rows: list[dict], key: str) -> dict:
    """{value of key: its rows}, in one pass."""
    grouped = {}
    for row in rows:
        grouped.setdefault(row[key], []).append(row)
    return dict(sorted(grouped.items()))


def summarize(rows: list[dict], most: int = 0) -> list[tuple[str, dict]]:
    """[(group, stats)] for all rows, each participant and each class; with most, at most that many
    participants and classes each (those with the most trials), the rest together as one group."""
    groups = [("all", rows)]
    for key, plural in (("participant", "participants"), ("class", "classes")):
        grouped = _groups(rows, key)
        if most and len(grouped) > most:
            kept = set(sorted(grouped, key=lambda value: -len(grouped[value]))[:most - 1])
            rest = [r for value, group in grouped.items() if value not in kept for r in group]
            groups += [(f"{key} {value}", grouped[value]) for value in grouped if value in kept]
            groups.append((f"the other {len(grouped) - len(kept)} {plural}", rest))
        else:
            groups += [(f"{key} {value}", group) for value, group in grouped.items()]
    return [(name, group_stats(group)) for name, group in groups]


CHART_GROUPS = 12  # participants and classes each that the chart shows by name: a bar a group stays readable


def printable(text: str) -> str:
    """text with control characters (a terminal's escape codes) shown as escapes, not obeyed."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _pct(x: float) -> str:
    return "   n/a" if math.isnan(x) else f"{100 * x:5.1f}%"


def format_summary(rows: list[dict]) -> str:
    lines = ["Fooled rate: share of trials in which the colourisation was picked as real (50% = chance), "
             "with 95% Wilson intervals.",
             f"{'':28} {'trials':>6} {'answered':>8} {'fooled':>6}   {'no answer = not fooled':<24}   "
             f"{'answered only':<24}   mean time"]
    for name, s in summarize(rows):
        mean = "n/a" if math.isnan(s["mean_s"]) else f"{s['mean_s']:.2f} s"
        lines.append(f"{printable(name)[:28]:28} {s['trials']:6d} {s['answered']:8d} {s['fooled']:6d}   "
                     f"{_pct(s['rate'])} [{_pct(s['interval'][0])}, {_pct(s['interval'][1])}]   "
                     f"{_pct(s['rate_answered'])} [{_pct(s['interval_answered'][0])}, "
                     f"{_pct(s['interval_answered'][1])}]   {mean}")
    return "\n".join(lines)


def summary_chart(rows: list[dict], path: str) -> str:
    """Horizontal bars of the fooled rate, both ways of counting no-answers, with their intervals."""
    from matplotlib.figure import Figure  # no pyplot: works in server threads and beside a window
    groups = summarize(rows, most=CHART_GROUPS)
    fig = Figure(figsize=(7, 1.2 + 0.45 * len(groups)))
    ax = fig.add_subplot()
    y = np.arange(len(groups))
    for offset, key, label in ((-0.2, "", "no answer = not fooled"), (0.2, "_answered", "answered only")):
        rate = np.array([s["rate" + key] for _, s in groups]) * 100
        low, high = (np.array([s["interval" + key][i] for _, s in groups]) * 100 for i in (0, 1))
        error = np.clip([rate - low, high - rate], 0, None)  # not below 0 by rounding at 0% and 100%
        ax.barh(y + offset, np.nan_to_num(rate), 0.38, xerr=np.nan_to_num(error), capsize=3, label=label)
    ax.axvline(50, color="gray", linestyle="--", linewidth=1)
    ax.set_yticks(y, [printable(name) for name, _ in groups])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("fooled rate (%), 95% Wilson interval; 50% = chance")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize=8, frameon=False)
    fig.tight_layout()
    with files.atomic_path(path) as temporary:  # a viewer never sees a half-written file
        fig.savefig(temporary, dpi=100)
    return path


_report_lock = threading.Lock()


def report(paths: list[str], prefix: str = "", chart: str = ""):
    """Print the summary of results files and write its bar chart (default: beside the first file)."""
    with _report_lock:
        rows = read_results(paths)
        if not rows:
            print(f"{prefix}No answers in {', '.join(paths)} yet.")
            return
        chart = chart or os.path.splitext(paths[0])[0] + ".png"
        files.refuse_special(chart, "--chart")
        if os.path.realpath(chart) in {os.path.realpath(p) for p in paths}:
            raise UserError(f"--chart {chart} is a results file: give another name, ending in .png")
        if not chart.lower().endswith(".png"):
            raise UserError(f"--chart {chart}: the chart is a PNG file, its name ends in .png")
        print(f"{prefix}Visual Turing test: {len(rows)} trials by {len({r['participant'] for r in rows})} "
              f"participant(s) in {', '.join(paths)}")
        print(format_summary(rows))
        print(f"chart: {summary_chart(rows, chart)}", flush=True)

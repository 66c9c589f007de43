"""The paper's visual Turing test as a local web page (or the authors' matplotlib window).

Each trial shows a test image's real colours and the model's colourisation of its gray version,
in random order; the participant picks the one they believe is real. The fooled rate is the share
of trials in which they pick the colourisation. Every answer is appended to a JSON-lines file and
fsynced the moment it arrives, so a crash loses nothing and a restarted server resumes each
participant where they stopped. The browser learns nothing about which image is real: random ids,
the same alt text, and uncompressed PNGs of the same byte size.
"""
import dataclasses
import io
import json
import math
import os
import re
import secrets
import sys
import threading
import time
import webbrowser
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import numpy as np
from PIL import Image

import colorgan  # noqa: F401  (sets TensorFlow's environment before it is imported)
from colorgan import files, images
from colorgan.config import Config, UserError, on_run

SIDES = ("left", "right")
GRACE = 0.5  # seconds an answer may arrive after its pair disappeared (network, drawing)
NAME = re.compile(r"[\w .@-]{1,40}")  # printed on the terminal: no control characters
MAX_BODY = 4096
ACTIVE_S = 120  # a name used this recently by another session is taken
TIMEOUT_S = 30  # a connection that sends nothing for this long is closed
Z95 = 1.959964


# ----------------------------------------------------------------------------------------------
# Trials: test images and their colourisations

@dataclasses.dataclass
class Item:
    """One test image, the same for every participant."""
    key: str  # where it came from (results file only, never sent to the browser)
    label: str  # its class: the parent folder's name, or "unknown"
    real: bytes  # PNG at the display size
    fake: bytes  # PNG of the same size


def to_png(rgb: np.ndarray, size: int) -> bytes:
    """Upscaled to size x size and stored uncompressed: a compressed colourisation (smoother) would
    be smaller than its real pair and give itself away in the browser's network panel."""
    image = Image.fromarray(rgb)
    if image.size != (size, size):
        image = image.resize((size, size), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=0)
    return out.getvalue()


def _label(path: str, root: str) -> str:
    folder = os.path.basename(os.path.dirname(os.path.relpath(path, root)))
    return folder if folder not in ("", "test", "val_256") else "unknown"


def _test_images(config: Config, count: int):
    """Up to count (key, class, uint8 RGB) colour images of the test split: a sample fixed by --seed
    (so a restarted server shows the same images), not the first ones (CIFAR folders are by class)."""
    from colorgan import data
    source = data.load_source(config.dataset, config.dataset_path, "test", config.seed)
    root = config.dataset_path or "."
    if source.stream is not None:  # TFDS places365_small: too many to index, take the first ones
        candidates = ((f"test[{i}]", "unknown", lambda rgb=rgb: rgb)
                      for i, rgb in enumerate(source.stream().as_numpy_iterator()))
    elif source.paths is None:
        candidates = ((f"test[{i}]", "unknown", lambda i=i: source.images[i])
                      for i in np.random.default_rng(config.seed).permutation(source.size))
    else:
        candidates = ((os.path.relpath(p, root), _label(p, root), lambda p=p: images.read_image(p, config.image_size))
                      for p in (source.paths[i] for i in np.random.default_rng(config.seed).permutation(source.size)))
    found = 0
    for key, label, read in candidates:
        if found == count:
            return
        try:
            rgb = read()
        except images.ImageError as error:
            print(f"note: skipped {error}")
            continue
        if not images.is_gray(rgb):
            found += 1
            yield key, label, images.crop_square(rgb, config.image_size)


def prepare_items(generator, config: Config, display_size: int = 256) -> list[Item]:
    """config.turing_test_size test images and their colourisations, as display-size PNGs."""
    from colorgan import color, inference
    found = list(_test_images(config, config.turing_test_size))
    if not found:
        raise UserError("no colour image in the test split for the Turing test")
    real = np.stack([rgb for _, _, rgb in found])
    fake = []
    for start in range(0, len(real), 32):  # 32 images of 256 px fit a laptop's memory
        gray, _ = color.preprocess(real[start:start + 32], config.color_space)
        fake.append(color.to_uint8(inference.colorize_batch(generator, config, gray)).numpy())
    fake = np.concatenate(fake)
    return [Item(key, label, to_png(r, display_size), to_png(f, display_size))
            for (key, label, r), f in zip(found, fake)]


# ----------------------------------------------------------------------------------------------
# The test: trial order, answers and the results file (shared by the web page and the window)

class Rejected(Exception):
    """An answer or request the server refuses: an HTTP status and a reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclasses.dataclass
class Trial:
    id: str
    participant: str
    number: int  # 1-based position in the participant's test
    total: int
    item: Item
    real_side: str
    created: float
    images: dict  # side -> random image id
    served: set = dataclasses.field(default_factory=set)
    shown: float | None = None  # when the pair was on screen (both images served)
    answered: bool = False

    def image(self, side: str) -> bytes:
        return self.item.real if side == self.real_side else self.item.fake


class TuringTest:
    """Trials for any number of participants, each in their own random order, and their answers,
    appended to the results file as they arrive. One lock guards the state and the file."""

    def __init__(self, items: list[Item], results_path: str, delay: float = 0.0, model: str = ""):
        self.items, self.path, self.delay, self.model = items, results_path, float(delay), model
        self.lock = threading.Lock()
        self.trials, self.images, self.pending = {}, {}, {}  # trial id, image id, participant -> Trial
        self.done = {}  # participant -> keys of the images they answered, this run or before
        if os.path.exists(results_path):
            for row in read_results([results_path]):
                self.done.setdefault(row["participant"], set()).add(row["image"])
        os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
        self.file = open(results_path, "ab")
        if self.file.tell() and not _ends_with_newline(results_path):
            self.file.write(b"\n")  # a crash mid-row left a partial line: start a fresh one

    def close(self):
        self.file.close()

    def progress(self, participant: str) -> int:
        keys = self.done.get(participant, set())
        return sum(item.key in keys for item in self.items)

    def next_trial(self, participant: str) -> Trial | None:
        """The participant's unanswered trial, or a new one; None when they have seen every image."""
        with self.lock:
            trial = self.pending.get(participant)
            if trial and self._expired(trial):
                self._record(trial, None, None, late=True)
                trial = None
            if trial:
                return trial  # a reloaded page gets the same pair, and no extra time
            keys = self.done.get(participant, set())
            left = [item for item in self.items if item.key not in keys]
            if not left:
                return None
            trial = Trial(secrets.token_urlsafe(16), participant, len(self.items) - len(left) + 1, len(self.items),
                          secrets.choice(left), secrets.choice(SIDES), time.monotonic(),
                          {side: secrets.token_urlsafe(16) for side in SIDES})
            self.trials[trial.id] = self.pending[participant] = trial
            self.images.update({image_id: (trial, side) for side, image_id in trial.images.items()})
            return trial

    def image(self, image_id: str) -> bytes | None:
        """An image of an unanswered trial; serving both puts the pair on screen and starts its clock."""
        with self.lock:
            trial, side = self.images.get(image_id, (None, None))
            if trial is None or trial.answered:
                return None
            trial.served.add(side)
            if len(trial.served) == 2 and trial.shown is None:
                trial.shown = time.monotonic()
            return trial.image(side)

    def shown(self, trial: Trial):
        with self.lock:
            trial.shown = trial.shown or time.monotonic()

    def answer(self, trial_id: str, participant: str, choice: str | None, client_s: float | None = None) -> dict:
        """Record a pick ("left", "right", or None for no answer) once; after the delay it counts as none."""
        with self.lock:
            trial = self.trials.get(trial_id)
            if trial is None:
                raise Rejected(404, "unknown trial")
            if trial.participant != participant:
                raise Rejected(403, "not your trial")
            if trial.answered:
                raise Rejected(409, "trial already answered")
            late = self._expired(trial)
            return self._record(trial, None if late else choice, client_s, late)

    def _expired(self, trial: Trial) -> bool:
        start = trial.shown or trial.created
        return self.delay > 0 and time.monotonic() - start > self.delay + GRACE

    def _record(self, trial: Trial, choice, client_s, late: bool) -> dict:
        row = {"participant": trial.participant, "trial": trial.number, "image": trial.item.key,
               "class": trial.item.label, "real_side": trial.real_side, "choice": choice,
               "fooled": choice is not None and choice != trial.real_side,
               "response_s": round(time.monotonic() - (trial.shown or trial.created), 3),
               "client_s": None if client_s is None else round(client_s, 3), "late": late,
               "delay": self.delay, "model": self.model,
               "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds")}
        self.file.write((json.dumps(row) + "\n").encode())
        self.file.flush()
        os.fsync(self.file.fileno())  # on disk before the participant sees the next pair
        trial.answered = True
        del self.pending[trial.participant]
        self.done.setdefault(trial.participant, set()).add(trial.item.key)
        return row


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


# ----------------------------------------------------------------------------------------------
# The web page and its server (standard library only)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Colourisation Turing test</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 64rem; text-align: center; background: #eee; }
.pair { display: flex; gap: 2rem; justify-content: center; visibility: hidden; }
.pair img { cursor: pointer; border: 4px solid transparent; max-width: 45vw; }
.pair img:hover { border-color: #36c; }
progress { width: 20rem; }
pre { text-align: left; display: inline-block; }
#msg { color: #b00; }
</style></head><body>
<h1>Which photo has its real colours?</h1>
<section id="start">
<p>Each screen shows two versions of a photo: one has its real colours, the other was coloured by a
computer from its gray version. Pick the real one: click it, or press &larr; or &rarr;.</p>
<form id="join"><label>Your name <input id="name" maxlength="40" autocomplete="off"></label>
<button>Start</button><br><small>Leave it empty to get an id. The same name later resumes your test.</small></form>
</section>
<section id="test" hidden>
<p><progress id="bar" value="0"></progress> <span id="count"></span> <span id="who"></span></p>
<div class="pair" id="pair"><img id="left" alt="left image"><img id="right" alt="right image"></div>
<p id="hint"></p>
</section>
<section id="done" hidden><h2>Thank you!</h2><pre id="summary"></pre></section>
<p id="msg" role="alert"></p>
<script>
const $ = id => document.getElementById(id);
let token = null, name = "", trial = null, shownAt = 0, timer = null;

async function api(path, body) {
  const r = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                               body: JSON.stringify(body)});
  const data = await r.json().catch(() => ({}));
  if (!r.ok) throw Object.assign(new Error(data.error || r.statusText), {status: r.status});
  return data;
}
function fail(e) { $("msg").textContent = "Error: " + e.message; }

async function join(wanted) {
  // the tab's earlier session, if any: a reloaded page keeps its name, which others cannot take meanwhile
  const s = await api("/api/start", {participant: wanted, token: sessionStorage.getItem("token")});
  token = s.token; name = s.participant; sessionStorage.setItem("token", token);
  $("who").textContent = "\\u00b7 " + name;
  $("hint").textContent = "\\u2190 left \\u00b7 right \\u2192" +
    (s.delay > 0 ? ` \\u00b7 each pair disappears after ${s.delay} s` : "");
  $("start").hidden = true; $("test").hidden = false;
  await next();
}

async function next() {
  trial = null; clearTimeout(timer); $("pair").style.visibility = "hidden";
  const t = await api("/api/next", {token});
  $("msg").textContent = "";
  if (t.done) { $("test").hidden = true; $("done").hidden = false; $("summary").textContent = t.summary; return; }
  $("bar").max = t.total; $("bar").value = t.number - 1; $("count").textContent = `${t.number} / ${t.total}`;
  let loaded = 0;
  const show = () => {
    if (++loaded < 2) return;
    trial = t; shownAt = performance.now(); $("pair").style.visibility = "visible";
    if (t.delay > 0) timer = setTimeout(() => answer(null), t.delay * 1000);
  };
  for (const side of ["left", "right"]) {
    $(side).onload = show; $(side).onerror = () => fail(new Error("an image did not load")); $(side).src = t[side];
  }
}

async function answer(choice) {
  if (!trial) return;
  const t = trial; trial = null; clearTimeout(timer); $("pair").style.visibility = "hidden";
  try {
    await api("/api/answer", {token, trial: t.trial, choice, client_s: (performance.now() - shownAt) / 1000});
  } catch (e) {
    if (e.status === 401) return join(name).catch(fail);  // the server restarted: resume
    fail(e);
  }
  next().catch(fail);
}

$("join").onsubmit = e => { e.preventDefault(); join($("name").value).catch(fail); };
$("left").onclick = () => answer("left");
$("right").onclick = () => answer("right");
document.addEventListener("keydown", e => {
  if (e.repeat) return;
  if (e.key === "ArrowLeft") answer("left");
  if (e.key === "ArrowRight") answer("right");
});
$("name").value = new URLSearchParams(location.search).get("name") || "";
</script>
</body></html>
""".encode()

HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Content-Security-Policy": "default-src 'none'; img-src 'self'; connect-src 'self'; "
                                      "script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'"}


class Handler(BaseHTTPRequestHandler):
    """Serves the page, the images of live trials and three JSON calls; nothing from the disk."""
    server_version, sys_version = "colorgan", ""
    timeout = TIMEOUT_S  # a slow or idle connection must not hold a thread forever

    def log_message(self, format, *args):  # one line per image would drown the summary
        pass

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/":
            return self._send(200, PAGE, "text/html; charset=utf-8")
        if path.startswith("/img/"):
            image = self.server.test.image(path[len("/img/"):])
            if image is not None:
                return self._send(200, image, "image/png")
        self._send_error(404, "not found")

    def do_POST(self):
        route = {"/api/start": self._start, "/api/next": self._next, "/api/answer": self._answer}.get(self.path)
        try:
            if route is None:
                raise Rejected(404, "not found")
            reply = route(self._body())
        except Rejected as error:
            return self._send_error(error.status, str(error))
        self._send(200, json.dumps(reply).encode(), "application/json")

    def _body(self) -> dict:
        # Only JSON: a page on another site cannot post it without a CORS preflight, which we refuse.
        if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise Rejected(415, "expected application/json")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise Rejected(411, "Content-Length required") from None
        if not 0 <= length <= MAX_BODY:
            raise Rejected(413, "body too large")
        try:
            body = json.loads(self.rfile.read(length))
        except TimeoutError:
            raise Rejected(408, "the request body did not arrive in time") from None
        except (ValueError, RecursionError):  # RecursionError: nested thousands deep
            raise Rejected(400, "malformed JSON") from None
        if not isinstance(body, dict):
            raise Rejected(400, "expected a JSON object")
        return body

    def _participant(self, body: dict) -> str:
        token = body.get("token")
        participant = self.server.sessions.get(token) if isinstance(token, str) else None
        if participant is None:
            raise Rejected(401, "unknown session: start again")
        self.server.last_seen[participant] = (token, time.monotonic())
        return participant

    def _start(self, body: dict) -> dict:
        name = body.get("participant", "")
        if not isinstance(name, str):
            raise Rejected(400, "participant must be a string")
        name = name.strip() or "p-" + secrets.token_hex(3)
        if not NAME.fullmatch(name):
            raise Rejected(400, "a name has 1-40 letters, digits, spaces or . _ @ -")
        given = body.get("token")
        token, seen = self.server.last_seen.get(name, (None, -ACTIVE_S))
        if token != given and time.monotonic() - seen < ACTIVE_S:
            raise Rejected(409, f"someone is taking the test as {name!r} now: choose another name")
        if self.server.sessions.get(given) != name:
            token = secrets.token_urlsafe(16)
        self.server.sessions[token] = name
        self.server.last_seen[name] = (token, time.monotonic())
        test = self.server.test
        return {"token": token, "participant": name, "total": len(test.items), "done": test.progress(name),
                "delay": test.delay}

    def _next(self, body: dict) -> dict:
        participant = self._participant(body)
        trial = self.server.test.next_trial(participant)
        if trial is None:
            self.server.finished(participant)
            rows = [r for r in read_results([self.server.test.path]) if r["participant"] == participant]
            return {"done": True, "summary": format_summary(rows)}
        return {"trial": trial.id, "number": trial.number, "total": trial.total, "delay": self.server.test.delay,
                "left": "/img/" + trial.images["left"], "right": "/img/" + trial.images["right"]}

    def _answer(self, body: dict) -> dict:
        participant = self._participant(body)
        if set(body) != {"token", "trial", "choice", "client_s"}:
            raise Rejected(400, "expected token, trial, choice and client_s")
        trial_id, choice, client_s = body["trial"], body["choice"], body["client_s"]
        if not isinstance(trial_id, str) or (choice is not None and choice not in SIDES):
            raise Rejected(400, "trial must be an id and choice left, right or null")
        if client_s is not None and (isinstance(client_s, bool) or not isinstance(client_s, (int, float))
                                     or not 0 <= client_s < 86400):
            raise Rejected(400, "client_s must be seconds or null")
        row = self.server.test.answer(trial_id, participant, choice, client_s)
        return {"recorded": "no answer" if row["choice"] is None else "answer"}  # not whether it was right

    def _send(self, status: int, body: bytes, content_type: str):
        self.send_response(status)
        for key, value in {**HEADERS, "Content-Type": content_type, "Content-Length": str(len(body))}.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, status: int, message: str):
        self._send(status, json.dumps({"error": message}).encode(), "application/json")


class Server(ThreadingHTTPServer):
    daemon_threads = True  # Ctrl-C must not wait for a browser's open connection

    def __init__(self, test: TuringTest, host: str, port: int, on_finish=None):
        super().__init__((host, port), Handler)
        self.test, self.sessions, self.on_finish, self.done = test, {}, on_finish, set()
        self.last_seen = {}  # participant -> (token, time of their last request)

    def finished(self, participant: str):
        with self.test.lock:
            first = participant not in self.done
            self.done.add(participant)
        if first and self.on_finish:
            self.on_finish(participant)


def serve(test: TuringTest, host: str = "127.0.0.1", port: int = 8000, participant: str = "",
          open_browser: bool = True):
    """Serve the test until Ctrl-C; print the summary when someone finishes and at the end."""
    try:
        server = Server(test, host, port, on_finish=lambda name: report([test.path], f"{name} finished. "))
    except OSError as error:
        raise UserError(f"cannot serve on {host}:{port} ({error.strerror or error}): try another --port") from None
    url = f"http://{host}:{server.server_address[1]}/" + (f"?name={quote(participant)}" if participant else "")
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: serving on {host}: anyone who can reach this machine can take the test")
    print(f"Visual Turing test: {len(test.items)} trials per participant"
          f"{f', {test.delay:g} s each' if test.delay else ''}; answers go to {test.path}")
    if test.done:
        print(f"{sum(map(len, test.done.values()))} earlier answers by {len(test.done)} participant(s): "
              "they resume where they stopped")
    print(f"Open {url}  (Ctrl-C stops)", flush=True)
    if open_browser and (sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY")
                         or os.environ.get("WAYLAND_DISPLAY")):
        webbrowser.open(url)  # without a display, webbrowser would start a text browser in this terminal
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nstopped")
    finally:
        server.server_close()
        test.close()
    report([test.path])


# ----------------------------------------------------------------------------------------------
# The authors' desktop window

def run_desktop(test: TuringTest, participant: str, wait=None):
    """One local participant in a matplotlib window: left/right arrow or a click picks; with a
    delay the pair is replaced after it. wait(seconds) runs the window's events (tests pass theirs)."""
    import matplotlib
    import matplotlib.pyplot as plt
    from matplotlib.backends import BackendFilter, backend_registry
    if wait is None:
        if plt.get_backend().lower() in backend_registry.list_builtin(BackendFilter.NON_INTERACTIVE):
            raise UserError("--ui matplotlib needs a display: use the web page (the default) instead")
        wait = plt.pause
    with matplotlib.rc_context({"keymap.back": [], "keymap.forward": []}):  # arrows pick, not navigate
        fig, axes = plt.subplots(1, 2, figsize=(9, 5))
        picked = []
        fig.canvas.mpl_connect("key_press_event", lambda e: picked.append(e.key) if e.key in SIDES else None)
        fig.canvas.mpl_connect("button_press_event", lambda e: picked.append(SIDES[list(axes).index(e.inaxes)])
                               if e.inaxes in axes else None)
        while plt.fignum_exists(fig.number) and (trial := test.next_trial(participant)):
            for ax, side in zip(axes, SIDES):
                ax.clear()
                ax.imshow(Image.open(io.BytesIO(trial.image(side))))
                ax.set_axis_off()
            fig.suptitle(f"{trial.number} / {trial.total}: which has its real colours? Left or right arrow, or click")
            fig.canvas.draw_idle()
            picked.clear()
            test.shown(trial)
            start = time.monotonic()
            while not picked and plt.fignum_exists(fig.number) and not (
                    test.delay and time.monotonic() - start >= test.delay):
                wait(0.02)
            if plt.fignum_exists(fig.number):  # a closed window leaves the trial for next time
                test.answer(trial.id, participant, picked[0] if picked else None)
        plt.close(fig)
    test.close()
    report([test.path])


# ----------------------------------------------------------------------------------------------
# Statistics

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


def summarize(rows: list[dict]) -> list[tuple[str, dict]]:
    """[(group, stats)] for all rows, each participant and each class."""
    groups = [("all", rows)]
    for key in ("participant", "class"):
        groups += [(f"{key} {value}", [r for r in rows if r[key] == value]) for value in sorted({r[key] for r in rows})]
    return [(name, group_stats(group)) for name, group in groups]


def _pct(x: float) -> str:
    return "   n/a" if math.isnan(x) else f"{100 * x:5.1f}%"


def format_summary(rows: list[dict]) -> str:
    lines = ["Fooled rate: share of trials in which the colourisation was picked as real (50% = chance), "
             "with 95% Wilson intervals.",
             f"{'':28} {'trials':>6} {'answered':>8} {'fooled':>6}   {'no answer = not fooled':<24}   "
             f"{'answered only':<24}   mean time"]
    for name, s in summarize(rows):
        mean = "n/a" if math.isnan(s["mean_s"]) else f"{s['mean_s']:.2f} s"
        lines.append(f"{name[:28]:28} {s['trials']:6d} {s['answered']:8d} {s['fooled']:6d}   "
                     f"{_pct(s['rate'])} [{_pct(s['interval'][0])}, {_pct(s['interval'][1])}]   "
                     f"{_pct(s['rate_answered'])} [{_pct(s['interval_answered'][0])}, "
                     f"{_pct(s['interval_answered'][1])}]   {mean}")
    return "\n".join(lines)


def summary_chart(rows: list[dict], path: str) -> str:
    """Horizontal bars of the fooled rate, both ways of counting no-answers, with their intervals."""
    from matplotlib.figure import Figure  # no pyplot: works in server threads and beside a window
    groups = summarize(rows)
    fig = Figure(figsize=(7, 1.2 + 0.45 * len(groups)))
    ax = fig.add_subplot()
    y = np.arange(len(groups))
    for offset, key, label in ((-0.2, "", "no answer = not fooled"), (0.2, "_answered", "answered only")):
        rate = np.array([s["rate" + key] for _, s in groups]) * 100
        low, high = (np.array([s["interval" + key][i] for _, s in groups]) * 100 for i in (0, 1))
        error = np.clip([rate - low, high - rate], 0, None)  # not below 0 by rounding at 0% and 100%
        ax.barh(y + offset, np.nan_to_num(rate), 0.38, xerr=np.nan_to_num(error), capsize=3, label=label)
    ax.axvline(50, color="gray", linestyle="--", linewidth=1)
    ax.set_yticks(y, [name for name, _ in groups])
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
        print(f"{prefix}Visual Turing test: {len(rows)} trials by {len({r['participant'] for r in rows})} "
              f"participant(s) in {', '.join(paths)}")
        print(format_summary(rows))
        print(f"chart: {summary_chart(rows, chart)}", flush=True)


# ----------------------------------------------------------------------------------------------
# Command line

def add_flags(parser):
    group = parser.add_argument_group("visual Turing test")
    group.add_argument("--participant", default="", help="name of the participant (web: filled in on the page)")
    group.add_argument("--host", default="127.0.0.1", help="address to serve on (default: loopback only)")
    group.add_argument("--port", type=int, default=8000, help="port to serve on (0: any free port)")
    group.add_argument("--results", default="", help="JSON-lines results file (default: <run>/turing.jsonl)")
    group.add_argument("--display-size", type=int, default=256, help="side of the shown images in pixels")
    group.add_argument("--ui", choices=("web", "matplotlib"), default="web",
                       help="web page for any number of participants, or the authors' desktop window")
    group.add_argument("--no-browser", action="store_true", help="do not open a browser")
    group.add_argument("--summarize", nargs="+", metavar="RESULTS", help="only print the summary of results files")
    group.add_argument("--chart", default="", help="bar chart PNG of --summarize (default: beside the first file)")


def main(config: Config, given: set, options):
    """python test_turing.py: prepare the trials of a trained run and run the test, or --summarize."""
    if options.summarize:
        missing = [p for p in options.summarize if not os.path.isfile(p)]
        if missing:
            raise UserError(f"no results file {missing[0]!r}")
        return report(options.summarize, chart=options.chart)
    if options.display_size < 8 or config.turing_test_size < 1 or config.turing_test_delay < 0:
        raise UserError("--display-size must be at least 8, --turing-test-size at least 1 and the delay not negative")
    if options.participant and not NAME.fullmatch(options.participant):
        raise UserError("--participant: 1-40 letters, digits, spaces or . _ @ -")
    from colorgan import inference
    run_dir = inference.find_run(config.checkpoints_path, config.name)
    generator, run_config = inference.load_run(run_dir)
    config = on_run(run_config, {k: getattr(config, k) for k in given}, run_dir)  # data, test size, delay
    start = time.time()
    items = prepare_items(generator, config, options.display_size)
    print(f"prepared {len(items)} trials in {time.time() - start:.1f} s")
    results = options.results or os.path.join(run_dir, "turing.jsonl")
    test = TuringTest(items, results, config.turing_test_delay, model=os.path.basename(os.path.abspath(run_dir)))
    if options.ui == "matplotlib":
        return run_desktop(test, options.participant or "p-" + secrets.token_hex(3))
    serve(test, options.host, options.port, options.participant, not options.no_browser)

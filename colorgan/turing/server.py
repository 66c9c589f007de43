"""The web page of the visual Turing test and its server (standard library only): several people
can take the test at once; the browser learns nothing about which image is real."""
import ipaddress
import json
import os
import pathlib
import re
import secrets
import socket
import queue
import sys
import threading
import time
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

from colorgan.config import UserError
from colorgan.turing.stats import report
from colorgan.turing.trials import SIDES, Rejected, TuringTest

NAME = re.compile(r"[\w .@-]{1,40}")  # printed on the terminal: no control characters
MAX_BODY = 4096
ACTIVE_S = 120  # a name used this recently by another session is taken
TIMEOUT_S = 30  # a connection that sends nothing for this long is closed
HEADERS_S = 5  # one whose request line and headers have not all come by then too: idle clients hold no thread long
REQUEST_S = 60  # and one whose request and reply together take longer: a byte every few seconds holds no thread
# Threads at once; more wait in the listen backlog, served in the order they came. Far more than
# participants: an idle connection holds one for HEADERS_S at most, so hundreds of them delay no one long.
MAX_CONNECTIONS = 512

PAGE = (pathlib.Path(__file__).parent / "page.html").read_bytes()  # and its script

HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Content-Security-Policy": "default-src 'none'; img-src 'self'; connect-src 'self'; "
                                      "script-src 'unsafe-inline'; style-src 'unsafe-inline'; frame-ancestors 'none'"}


class Handler(BaseHTTPRequestHandler):
    """Serves the page, the images of live trials and three JSON calls; nothing from the disk."""
    server_version, sys_version = "colorgan", ""
    timeout = TIMEOUT_S  # a slow or idle connection must not hold a thread forever

    def log_message(self, format, *args):  # one line per image would drown the summary
        pass

    def setup(self):
        super().setup()
        # The socket timeout bounds one recv; the deadlines bound the headers and the whole request.
        self.deadline = self._timer(HEADERS_S)

    def parse_request(self):
        complete = super().parse_request()
        self.deadline.cancel()
        self.deadline = self._timer(REQUEST_S)
        return complete

    def _timer(self, seconds):
        timer = threading.Timer(seconds, self._cut)
        timer.daemon = True
        timer.start()
        return timer

    def finish(self):
        self.deadline.cancel()
        try:
            super().finish()
        except OSError:  # the client went away: nothing to flush to
            pass

    def _cut(self):
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def do_GET(self):
        if not self._host_allowed():
            return
        path = self.path.split("?", 1)[0]
        if path == "/":
            return self._send(200, PAGE, "text/html; charset=utf-8")
        if path.startswith("/img/"):
            image = self.server.test.image(path[len("/img/"):])
            if image is not None:
                return self._send(200, image, "image/png")
        self._send_error(404, "not found")

    def do_POST(self):
        if not self._host_allowed():
            return
        route = {"/api/start": self._start, "/api/next": self._next, "/api/answer": self._answer}.get(self.path)
        try:
            if route is None:
                raise Rejected(404, "not found")
            reply = route(self._body())
        except Rejected as error:
            return self._send_error(error.status, str(error))
        except Exception as error:  # a bug must still get the client an answer, and the terminal a line
            print(f"error: {self.path}: {type(error).__name__}: {error}", flush=True)
            return self._send_error(500, "internal error")
        self._send(200, json.dumps(reply).encode(), "application/json")

    def _host_allowed(self) -> bool:
        """Answer only requests addressed to this server: against DNS rebinding, a page elsewhere whose
        domain name comes to point at 127.0.0.1 sends its own name in Host, not ours."""
        host, _, port = (self.headers.get("Host") or "").rpartition(":")
        host = host.strip("[]").lower()
        if port == str(self.server.server_address[1]) and (host in self.server.names or _is_ip(host)):
            return True
        self._send_error(421, "this server answers only to its own address")
        return False

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
        if given is not None and not isinstance(given, str):
            raise Rejected(400, "token must be a string")
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
            # Nothing about which side was real: others (or they, under another name) may still take
            # trials of the same images. The figures are the experimenter's (terminal, --summarize).
            answered = self.server.test.progress(participant)
            return {"done": True, "summary": f"{answered} answers recorded. The results are with the experimenter."}
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
    request_queue_size = 128  # the listen backlog: a class of 30 opening the link at once all get in

    def __init__(self, test: TuringTest, host: str, port: int, on_finish=None):
        super().__init__((host, port), Handler)
        # the names a participant's browser may use for this server (IP literals are always fine)
        self.names = {"localhost", host.lower(), socket.gethostname().lower(), socket.getfqdn().lower()}
        self.test, self.sessions, self.on_finish, self.done = test, {}, on_finish, set()
        self.last_seen = {}  # participant -> (token, time of their last request)
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        # Finishes are reported (the results read again, a chart drawn) off the request path, in turn.
        self.finishes = queue.SimpleQueue()
        threading.Thread(target=self._report_finishes, daemon=True).start()

    def process_request(self, request, client_address):
        self.slots.acquire()  # the accept loop waits here: connections beyond the cap queue in the backlog
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], OSError):  # a browser closing its tab is not an error
            super().handle_error(request, client_address)

    def finished(self, participant: str):
        with self.test.lock:
            first = participant not in self.done
            self.done.add(participant)
        if first and self.on_finish:
            self.finishes.put(participant)

    def _report_finishes(self):
        while True:
            participant = self.finishes.get()
            try:
                self.on_finish(participant)
            except Exception as error:  # noqa: BLE001  (the summary is a courtesy: serving goes on)
                print(f"error: summary after {participant} finished: {type(error).__name__}: {error}", flush=True)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


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
    if os.path.isfile(test.path):
        report([test.path])
    else:
        print(f"no results file at {test.path} (moved or deleted): nothing to summarize")

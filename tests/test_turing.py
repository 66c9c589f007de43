"""The visual Turing test: a real session in headless Chromium, the server's refusals, what the
browser can see, resuming after a crash, the statistics and the desktop window's trial logic."""
import argparse
import errno
import http.client
import io
import json
import math
import os
import pathlib
import re
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from colorgan import turing
from colorgan.images import list_images
from colorgan.config import UserError
from tests.conftest import ROOT

CHROMIUM = "/usr/bin/chromium"  # Debian's chromium: .ci/run installs it
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ID = r"[A-Za-z0-9_-]{22}"  # secrets.token_urlsafe(16)


def make_items(n):
    """Noise as the "real" image and a flat colour as the "fake": compressed, their sizes would differ."""
    rng = np.random.default_rng(0)
    noise, flat = rng.integers(0, 256, (n, 16, 16, 3), np.uint8), np.full((16, 16, 3), 128, np.uint8)
    return [turing.Item(f"secret-key-{i}", "secret-class", turing.to_png(noise[i], 32), turing.to_png(flat, 32))
            for i in range(n)]


def read_rows(path):
    return [json.loads(line) for line in open(path)]


class Client:
    def __init__(self, port):
        self.port = port

    def request(self, method, path, body=None, content_type="application/json"):
        """(status, body bytes, headers); path goes out exactly as given, "../" included."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        conn.request(method, path, data, {"Content-Type": content_type} if data is not None else {})
        response = conn.getresponse()
        result = response.status, response.read(), dict(response.getheaders())
        conn.close()
        return result

    def post(self, path, body, **kwargs):
        status, data, _ = self.request("POST", path, body, **kwargs)
        return status, json.loads(data)

    def start(self, name):
        return self.post("/api/start", {"participant": name})[1]["token"]

    def next(self, token, show=True):
        """The next trial; show: fetch both its images, as the page does before it takes an answer."""
        reply = self.post("/api/next", {"token": token})[1]
        for side in turing.SIDES if show and "trial" in reply else ():
            assert self.request("GET", reply[side])[0] == 200
        return reply

    def answer(self, token, trial, choice="left"):
        return self.post("/api/answer", {"token": token, "trial": trial, "choice": choice, "client_s": 0.5})


@pytest.fixture
def serve(tmp_path):
    """serve(n, delay) -> (Client, TuringTest): the real server in a thread on a free loopback port."""
    servers = []

    def start(n=6, delay=0.0):
        test = turing.TuringTest(make_items(n), str(tmp_path / "results.jsonl"), delay)
        server = turing.Server(test, "127.0.0.1", 0)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return Client(server.server_address[1]), test

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
        server.test.close()


# ----------------------------------------------------------------------------------------------
# What the server refuses

def test_replayed_answer_is_refused(serve, tmp_path):
    client, _ = serve()
    token = client.start("ann")
    trial = client.next(token)["trial"]
    assert client.answer(token, trial) == (200, {"recorded": "answer"})
    assert client.answer(token, trial, "right")[0] == 409
    assert len(read_rows(tmp_path / "results.jsonl")) == 1


def test_answer_to_another_participants_trial_is_refused(serve, tmp_path):
    client, _ = serve()
    ann, bob = client.start("ann"), client.start("bob")
    bobs_trial = client.next(bob)["trial"]
    assert client.answer(ann, bobs_trial)[0] == 403
    assert client.answer(ann, "x" * 22)[0] == 404
    assert client.answer("not-a-session", bobs_trial)[0] == 401
    assert client.answer(bob, bobs_trial)[0] == 200
    assert [r["participant"] for r in read_rows(tmp_path / "results.jsonl")] == ["bob"]


def test_path_traversal_and_unknown_paths_are_404(serve, tmp_path, monkeypatch):
    client, _ = serve()
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    monkeypatch.chdir(tmp_path)  # the server reads no file, wherever it runs
    for path in ("/../../../../etc/passwd", "/img/../../../etc/passwd", "/img/..%2f..%2fetc%2fpasswd",
                 "/%2e%2e/%2e%2e/etc/passwd", "//etc/passwd", "/secret.txt", "/img/../secret.txt",
                 "/img/", "/index.html", "/colorgan/turing.py", "/results.jsonl"):
        status, body, _ = client.request("GET", path)
        assert status == 404, path
        assert b"SECRET" not in body and b"root:" not in body
    assert client.request("GET", "http://evil/../etc/passwd")[0] == 421  # addressed to another host
    assert client.post("/api/../api/start", {"participant": "ann"})[0] == 404


def test_malformed_bodies_are_refused(serve, tmp_path):
    client, _ = serve()
    token = client.start("ann")
    trial = client.next(token)["trial"]
    good = {"token": token, "trial": trial, "choice": "left", "client_s": 0.4}
    bad = [(b"{not json", 400), (b"[1, 2]", 400), (b'"left"', 400), (b"", 400),
           ({k: v for k, v in good.items() if k != "choice"}, 400), ({**good, "choice": "up"}, 400),
           ({**good, "choice": 0}, 400), ({**good, "client_s": "fast"}, 400), ({**good, "client_s": True}, 400),
           ({**good, "client_s": -1}, 400), ({**good, "trial": ["x"]}, 400), ({**good, "real": "left"}, 400),
           ({**good, "token": {"a": 1}}, 401), ({**good, "pad": "x" * 5000}, 413)]
    for token_ in (["a"], {"a": 1}, 7):  # unhashable or not a string: a 400, not a dropped connection
        assert client.post("/api/start", {"participant": "bob", "token": token_})[0] == 400
    for body, status in bad:
        assert client.request("POST", "/api/answer", body)[0] == status, body
    assert client.request("POST", "/api/answer", good, content_type="text/plain")[0] == 415  # no cross-site forms
    assert client.post("/api/start", {"participant": "\x1b[2J"})[0] == 400  # printed on the terminal later
    assert client.post("/api/start", {"participant": 7})[0] == 400
    assert not read_rows(tmp_path / "results.jsonl")
    assert client.post("/api/answer", good) == (200, {"recorded": "answer"})  # the trial was still open


def test_only_requests_addressed_to_this_server_are_answered(serve):
    client, _ = serve()
    port = client.port

    def status(method, path, host, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        data = None if body is None else json.dumps(body).encode()
        conn.putrequest(method, path, skip_host=True)
        conn.putheader("Host", host)
        if data is not None:
            conn.putheader("Content-Type", "application/json"), conn.putheader("Content-Length", str(len(data)))
        conn.endheaders(data)
        code = conn.getresponse().status
        conn.close()
        return code

    # a page whose domain name was re-pointed at 127.0.0.1 (DNS rebinding) sends its own name
    for host in (f"evil.example.com:{port}", "evil.example.com", f"127.0.0.1:{port + 1}", ""):
        assert status("GET", "/", host) == 421, host
        assert status("POST", "/api/start", host, {"participant": "ann"}) == 421, host
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        assert status("GET", "/", host) == 200, host
    assert status("POST", "/api/start", f"localhost:{port}", {"participant": "ann"}) == 200


def test_a_failed_write_is_reported_and_leaves_nothing_to_flush_later(serve, tmp_path):
    client, test = serve()
    token = client.start("ann")
    trial = client.next(token)["trial"]

    class Full:  # the results file on a disk that fills up: part of a row written, then ENOSPC
        def __init__(self, file):
            self.file = file

        def fileno(self):
            return self.file.fileno()

        def write(self, data):
            self.file.write(data[:7])
            raise OSError(errno.ENOSPC, "No space left on device")

    results = test.file
    test.file = Full(results)
    try:
        for _ in range(2):  # the participant retries while the disk is still full
            status, reply = client.answer(token, trial)
            assert status == 503 and "No space left" in reply["error"]
    finally:
        test.file = results
    assert not (tmp_path / "results.jsonl").read_bytes()  # the part-written row was cut off
    assert client.answer(token, trial) == (200, {"recorded": "answer"})  # writable again: the retry counts
    assert client.answer(token, client.next(token)["trial"])[0] == 200
    rows = read_rows(tmp_path / "results.jsonl")
    assert [r["trial"] for r in rows] == [1, 2]  # each once


def test_thirty_participants_starting_at_once_all_get_in_and_every_answer_is_kept_once(serve, tmp_path):
    client, _ = serve(n=3)
    barrier, errors = threading.Barrier(30), []

    def take(name):
        try:
            barrier.wait(10)
            token = client.start(name)
            while "trial" in (reply := client.next(token)):
                for side in ("left", "right"):
                    assert client.request("GET", reply[side])[0] == 200
                assert client.answer(token, reply["trial"], "left")[0] == 200
        except Exception as error:  # noqa: BLE001  (collected: an assert in a thread would be lost)
            errors.append(f"{name}: {error!r}")

    threads = [threading.Thread(target=take, args=(f"p{i}",)) for i in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    rows = read_rows(tmp_path / "results.jsonl")
    assert (sorted((r["participant"], r["trial"]) for r in rows)
            == sorted((f"p{i}", t) for i in range(30) for t in (1, 2, 3)))


def test_every_request_gets_an_answer_and_idle_connections_are_closed(serve, monkeypatch):
    monkeypatch.setattr(turing.Handler, "timeout", 0.5)
    client, _ = serve()
    assert client.request("POST", "/api/start", b"[" * 2000 + b"]" * 2000)[0] == 400  # nested too deep for json
    slow = socket.create_connection(("127.0.0.1", client.port), timeout=10)
    slow.sendall(b"POST /api/start HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 50\r\n\r\n{" % client.port)
    started = time.monotonic()
    reply = slow.recv(1000)  # the body never comes: 408, and the connection closes
    assert reply.startswith(b"HTTP/1.0 408") and time.monotonic() - started < 5
    idle = socket.create_connection(("127.0.0.1", client.port), timeout=10)
    assert idle.recv(100) == b"" and time.monotonic() - started < 5  # says nothing: closed
    slow.close(), idle.close()


def test_a_name_in_use_is_refused_but_its_own_tab_resumes(serve, monkeypatch):
    client, _ = serve()
    token = client.start("ann")
    assert client.post("/api/start", {"participant": "ann"})[0] == 409  # a second person, the same name
    assert client.post("/api/start", {"participant": "ann", "token": token})[1]["token"] == token  # reloaded
    monkeypatch.setattr(turing.server, "ACTIVE_S", 0.0)  # ann went away: her name is free to resume later
    assert client.post("/api/start", {"participant": "ann"})[0] == 200


def test_a_late_answer_counts_as_no_answer(serve, tmp_path):
    client, _ = serve(delay=0.2)
    token = client.start("ann")
    trial = client.next(token)
    for side in turing.SIDES:
        assert client.request("GET", trial[side])[0] == 200  # on screen now: the clock starts
    time.sleep(0.2 + turing.GRACE + 0.2)
    assert client.answer(token, trial["trial"]) == (200, {"recorded": "no answer"})
    row, = read_rows(tmp_path / "results.jsonl")
    assert row["choice"] is None and row["late"] and not row["fooled"] and row["response_s"] > 0.6


def test_the_clock_starts_with_the_first_image_and_a_late_trial_shows_nothing(serve, tmp_path):
    client, _ = serve(delay=0.2)
    token = client.start("ann")
    unseen = client.next(token, show=False)
    assert client.answer(token, unseen["trial"])[0] == 409  # an answer to images never shown does not count
    assert client.request("GET", unseen["left"])[0] == 200  # one image studied: the clock runs from here
    time.sleep(0.2 + turing.GRACE + 0.2)
    assert client.request("GET", unseen["right"])[0] == 404  # too late to see its pair
    assert client.answer(token, unseen["trial"]) == (200, {"recorded": "no answer"})
    row, = read_rows(tmp_path / "results.jsonl")
    assert row["choice"] is None and row["late"] and row["response_s"] > 0.6
    skipped = client.next(token, show=False)  # no answer to an unseen pair is allowed: it records none
    assert client.post("/api/answer", {"token": token, "trial": skipped["trial"], "choice": None,
                                       "client_s": None}) == (200, {"recorded": "no answer"})


def test_a_results_file_deleted_while_serving_is_written_back_and_a_moved_one_refuses_answers(serve, tmp_path,
                                                                                              capsys):
    client, _ = serve()
    path = tmp_path / "results.jsonl"
    token = client.start("ann")
    assert client.answer(token, client.next(token)["trial"])[0] == 200
    path.unlink()  # an experimenter tidying up
    assert client.answer(token, client.next(token)["trial"]) == (200, {"recorded": "answer"})
    assert [r["trial"] for r in read_rows(path)] == [1, 2]  # both, in the file named
    assert "was deleted while the test ran" in capsys.readouterr().out
    path.rename(tmp_path / "moved.jsonl")
    trial = client.next(token)["trial"]
    for _ in range(2):
        status, reply = client.answer(token, trial)
        assert status == 503 and "moved or replaced" in reply["error"]  # refused, so never acknowledged
    assert capsys.readouterr().out.count("was moved or replaced") == 1  # the experimenter is told once
    assert not path.exists() and len(read_rows(tmp_path / "moved.jsonl")) == 2


def test_two_servers_on_one_results_file_are_refused(tmp_path):
    path = str(tmp_path / "results.jsonl")
    first = turing.TuringTest(make_items(2), path)
    with pytest.raises(UserError, match="in use by another test_turing.py"):
        turing.TuringTest(make_items(2), path)
    first.close()
    turing.TuringTest(make_items(2), path).close()  # free again once the first one stopped


@pytest.mark.slow
def test_a_client_sending_a_byte_at_a_time_is_cut_off_at_the_request_deadline(serve, monkeypatch):
    monkeypatch.setattr(turing.server, "REQUEST_S", 1.0)
    client, _ = serve()
    trickle = socket.create_connection(("127.0.0.1", client.port))
    trickle.settimeout(0.1)  # each recv below waits 0.1 s: far below the 30 s of one recv on the server
    started, cut = time.monotonic(), False
    for byte in b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"x" * 200:
        try:
            trickle.sendall(bytes([byte]))
            if trickle.recv(100) == b"":
                cut = True
                break
        except TimeoutError:
            continue
        except OSError:
            cut = True
            break
    trickle.close()
    assert cut and 0.9 < time.monotonic() - started < 10


def test_half_open_connections_hold_up_no_participant(serve, monkeypatch):
    monkeypatch.setattr(turing.server, "HEADERS_S", 3.0)
    client, _ = serve()
    idle = []
    for _ in range(64):  # as many as the old cap of threads: a request line, then nothing
        idle.append(socket.create_connection(("127.0.0.1", client.port), timeout=10))
        idle[-1].sendall(b"GET / HTTP/1.1\r\n")
    started = time.monotonic()
    assert client.start("ann")  # answered at once, not when the idle ones are cut
    assert time.monotonic() - started < 2.5
    assert idle[0].recv(100) == b"" and time.monotonic() - started < 8  # cut at the headers' deadline
    for conn in idle:
        conn.close()


def test_connections_beyond_the_cap_wait_for_a_free_thread(serve, monkeypatch):
    monkeypatch.setattr(turing.server, "MAX_CONNECTIONS", 2)
    client, _ = serve()
    held = [socket.create_connection(("127.0.0.1", client.port)) for _ in range(2)]
    replies = []
    waiting = threading.Thread(target=lambda: replies.append(client.request("GET", "/")[0]), daemon=True)
    waiting.start()
    waiting.join(1.0)
    assert not replies  # the two silent connections hold both threads: the third waits in the backlog
    for conn in held:
        conn.close()
    waiting.join(10)
    assert replies == [200]


def test_a_finishing_participant_is_answered_before_the_summary_is_drawn(tmp_path):
    drawn = threading.Event()

    def slow_summary(name):
        time.sleep(2)
        drawn.set()

    test = turing.TuringTest(make_items(1), str(tmp_path / "results.jsonl"))
    server = turing.Server(test, "127.0.0.1", 0, on_finish=slow_summary)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        client = Client(server.server_address[1])
        token = client.start("ann")
        assert client.answer(token, client.next(token)["trial"])[0] == 200
        started = time.monotonic()
        assert client.next(token) == {"done": True, "summary": "1 answers recorded. The results are with the "
                                                               "experimenter."}
        assert time.monotonic() - started < 1.5 and not drawn.is_set()
        assert drawn.wait(10)  # and the summary still comes
    finally:
        server.shutdown()
        server.server_close()
        test.close()


def test_the_final_summary_of_a_deleted_results_file_says_so(tmp_path, monkeypatch, capsys):
    test = turing.TuringTest(make_items(1), str(tmp_path / "results.jsonl"))
    monkeypatch.setattr(turing.server.Server, "serve_forever", lambda server: os.remove(test.path))
    turing.serve(test, "127.0.0.1", 0, open_browser=False)
    assert "nothing to summarize" in capsys.readouterr().out


def test_it_binds_loopback_by_default(tmp_path, monkeypatch):
    parser = argparse.ArgumentParser()
    turing.add_flags(parser)
    options = parser.parse_args(["--port", "0"])
    test = turing.TuringTest(make_items(1), str(tmp_path / "results.jsonl"))
    bound = []
    monkeypatch.setattr(turing.server.Server, "serve_forever", lambda server: bound.append(server.server_address))
    turing.serve(test, options.host, options.port, open_browser=False)  # serves until the (patched) loop returns
    assert bound and bound[0][0] == "127.0.0.1"  # not reachable from other machines
    test.close()


# ----------------------------------------------------------------------------------------------
# What the browser can see

def test_nothing_served_tells_real_from_fake(serve, tmp_path):
    client, test = serve(n=30)
    page = client.request("GET", "/")[1]
    token = client.start("ann")
    for number in range(1, 31):
        reply = client.next(token)
        assert sorted(reply) == ["delay", "left", "number", "right", "total", "trial"]
        assert reply["number"] == number and reply["total"] == 30
        assert re.fullmatch(ID, reply["trial"])
        assert re.fullmatch("/img/" + ID, reply["left"]) and re.fullmatch("/img/" + ID, reply["right"])
        text = json.dumps(reply).lower()
        assert not any(word in text for word in ("real", "fake", "secret"))
        (s1, left, h1), (s2, right, h2) = (client.request("GET", reply[side]) for side in turing.SIDES)
        assert s1 == s2 == 200 and left != right
        assert len(left) == len(right)  # noise and a flat colour: only uncompressed PNGs are this equal
        assert {k: v for k, v in h1.items() if k != "Date"} == {k: v for k, v in h2.items() if k != "Date"}
        assert Image.open(io.BytesIO(left)).size == Image.open(io.BytesIO(right)).size == (32, 32)
        assert Image.open(io.BytesIO(left)).info == Image.open(io.BytesIO(right)).info
        # The reply to an answer says nothing about whether it was right, and the images are gone.
        assert client.answer(token, reply["trial"], "left") == (200, {"recorded": "answer"})
        assert client.request("GET", reply["left"])[0] == 404
    assert client.request("GET", "/")[1] == page  # the page holds no trial data at all
    assert b"secret" not in page and b"/img/" not in page
    assert page.count(b'alt="left image"') == page.count(b'alt="right image"') == 1
    sides = [r["real_side"] for r in read_rows(tmp_path / "results.jsonl")]
    assert 5 < sides.count("left") < 25  # random, so neither position means "real"


# ----------------------------------------------------------------------------------------------
# Several participants, crashes and restarts

def test_participants_take_the_test_at_once_in_their_own_order(serve, tmp_path):
    client, _ = serve(n=15)
    orders = {}

    def take(name):
        token = client.start(name)
        orders[name] = []
        while "trial" in (reply := client.next(token)):
            orders[name].append(reply["number"])
            client.answer(token, reply["trial"], "right")

    threads = [threading.Thread(target=take, args=(name,)) for name in ("ann", "bob", "cy")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    rows = read_rows(tmp_path / "results.jsonl")
    assert len(rows) == 45 and all(orders[name] == list(range(1, 16)) for name in orders)
    images = {name: [r["image"] for r in rows if r["participant"] == name] for name in orders}
    assert all(sorted(seen) == sorted(images["ann"]) and len(set(seen)) == 15 for seen in images.values())
    assert len({tuple(seen) for seen in images.values()}) == 3  # each their own random order


def test_a_restarted_server_resumes_each_participant(tmp_path):
    items, path = make_items(5), str(tmp_path / "results.jsonl")
    test = turing.TuringTest(items, path)
    seen = []
    for _ in range(2):
        trial = test.next_trial("ann")
        seen.append(trial.item.key)
        test.shown(trial)
        test.answer(trial.id, "ann", "left", 0.3)
        assert len(read_rows(path)) == len(seen)  # on disk the moment it arrives, before any close
    test.next_trial("ann")  # on screen when the server died: not answered, so not recorded
    with open(path, "ab") as f:
        f.write(b'{"participant": "ann", "tri')  # and a row cut off mid-write
    test.file.close()  # the server died: the kernel closed its file and released its lock, nothing more
    test = turing.TuringTest(items, path)  # the restart
    trial = test.next_trial("ann")
    assert trial.number == 3 and trial.item.key not in seen
    assert test.next_trial("bob").number == 1
    while trial:
        test.shown(trial)
        test.answer(trial.id, "ann", "right")
        trial = test.next_trial("ann")
    test.close()
    rows = turing.read_results([path])
    assert sorted(r["image"] for r in rows if r["participant"] == "ann") == sorted(item.key for item in items)
    assert [r["trial"] for r in rows] == [1, 2, 3, 4, 5]


# ----------------------------------------------------------------------------------------------
# Statistics

def test_wilson_interval_and_both_ways_of_counting_no_answers():
    assert turing.wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert turing.wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert all(math.isnan(x) for x in turing.wilson(0, 0))
    rows = [{"real_side": "left", "choice": c, "response_s": t}
            for c, t in (("right", 1.0), ("left", 2.0), (None, 3.0), ("right", 3.0))]
    s = turing.group_stats(rows)
    assert (s["trials"], s["answered"], s["fooled"]) == (4, 3, 2)
    assert s["rate"] == 0.5 and s["interval"] == turing.wilson(2, 4)  # no answer = not fooled
    assert s["rate_answered"] == pytest.approx(2 / 3) and s["interval_answered"] == turing.wilson(2, 3)
    assert s["mean_s"] == pytest.approx(2.0)  # no-answers have no response time


def test_summary_of_edge_cases(tmp_path, capsys):
    rows = [{"participant": p, "class": "c", "real_side": "left", "choice": c, "response_s": 1.0}
            for p, c in (("never", None), ("never", None), ("always", "right"), ("right", "left"))]
    turing.summary_chart(rows, str(tmp_path / "chart.png"))  # 0%, 100% and no answer at all
    groups = [name for name, _ in turing.stats.summarize(rows)]
    assert {"participant never", "participant always", "participant right"} <= set(groups)
    bars = lambda n: (700, round(100 * (1.2 + 0.45 * n)))  # noqa: E731  (7 inches at 100 dpi, a row per group)
    assert Image.open(tmp_path / "chart.png").size == bars(len(groups))
    chart = np.asarray(Image.open(tmp_path / "chart.png").convert("L"))
    assert (chart < 250).mean() > 0.05  # bars and text drawn, not a blank page
    text = turing.format_summary(rows)
    assert summary_line(text, "participant always")[:4] == [1, 1, 1, 100]
    assert "n/a" in next(line for line in text.splitlines() if line.startswith("participant never"))


def test_summarize_escapes_names_skips_non_finite_times_and_refuses_a_folder_chart(tmp_path, capsys):
    row = {"participant": "p", "trial": 1, "image": "test/c/1.png", "class": "c", "real_side": "left",
           "choice": "right", "fooled": True, "response_s": 1.5}
    rows = [row, {**row, "participant": "\x1b[2J\x1b[31mevil", "trial": 2}, {**row, "trial": 3, "response_s": math.nan},
            {**row, "trial": 4, "response_s": math.inf}]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))  # json writes NaN and Infinity as such
    turing.report([str(results)])
    out, err = capsys.readouterr()
    assert "\x1b" not in out and "participant \\x1b[2J\\x1b[31m" in out  # shown as escapes, not obeyed
    assert err.count("skipped a malformed row") == 2 and summary_line(out, "all")[:3] == [2, 2, 2]
    assert "nan" not in out.lower().replace("n/a", "")
    with pytest.raises(UserError, match="--chart .*not a regular file"):
        turing.report([str(results)], chart=str(tmp_path))
    before = results.read_bytes()
    with pytest.raises(UserError, match="is a results file"):  # the chart onto the results: refused, not written
        turing.report([str(results)], chart=str(results))
    with pytest.raises(UserError, match="ends in .png"):
        turing.report([str(results)], chart=str(tmp_path / "chart.jsonl"))
    assert results.read_bytes() == before


def test_summary_of_thousands_of_participants_is_fast_and_its_chart_readable(tmp_path, capsys):
    rng = np.random.default_rng(0)
    rows = [{"participant": f"p{i // 100}", "trial": i % 100 + 1, "image": f"val/{i % 100}.jpg",
             "class": f"scene{i % 100}", "real_side": "left", "choice": ("left", "right")[int(rng.integers(2))],
             "fooled": False, "response_s": 1.0} for i in range(300_000)]  # 3,000 participants, 100 classes
    started = time.perf_counter()
    groups = turing.stats.summarize(rows)
    assert len(groups) == 1 + 3000 + 100 and time.perf_counter() - started < 10  # linear: seconds, not minutes
    turing.summary_chart(rows, str(tmp_path / "chart.png"))
    width, height = Image.open(tmp_path / "chart.png").size
    shown = 1 + 2 * turing.stats.CHART_GROUPS  # all, 11 + the others of each kind
    assert (width, height) == (700, round(100 * (1.2 + 0.45 * shown)))
    named = [name for name, _ in turing.stats.summarize(rows, most=turing.stats.CHART_GROUPS)]
    assert "the other 2989 participants" in named and "the other 89 classes" in named


# ----------------------------------------------------------------------------------------------
# The desktop window (Agg here: no display)

def test_desktop_window_records_keys_clicks_and_timeouts(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backend_bases import KeyEvent, MouseEvent

    path = str(tmp_path / "results.jsonl")
    with pytest.raises(UserError, match="display"):
        turing.run_desktop(turing.TuringTest(make_items(3), path), "me")
    test = turing.TuringTest(make_items(3), path, delay=0.3)

    def wait(seconds):  # the participant: a right-arrow key, then a click on the left image, then nothing
        fig, answered = plt.gcf(), test.progress("me")
        if answered == 0:
            fig.canvas.callbacks.process("key_press_event", KeyEvent("key_press_event", fig.canvas, "right"))
        elif answered == 1:
            box = fig.axes[0].bbox
            event = MouseEvent("button_press_event", fig.canvas, box.x0 + box.width / 2, box.y0 + box.height / 2, 1)
            fig.canvas.callbacks.process("button_press_event", event)
        else:
            time.sleep(seconds)

    start = time.monotonic()
    turing.run_desktop(test, "me", wait=wait)
    rows = read_rows(path)
    assert [r["choice"] for r in rows] == ["right", "left", None] and [r["trial"] for r in rows] == [1, 2, 3]
    assert 0.3 <= rows[2]["response_s"] < time.monotonic() - start
    assert os.path.isfile(tmp_path / "results.png")  # the summary chart at the end


# ----------------------------------------------------------------------------------------------
# The real thing: train a tiny run, serve it, take the test in headless Chromium

def summary_line(text, name):
    """The numbers of one line of the summary table."""
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return [float(x) for x in re.findall(r"\d+(?:\.\d+)?", line[len(name):])]


def expected_line(rows):
    answered = [r for r in rows if r["choice"] is not None]
    k, n, a = sum(r["choice"] != r["real_side"] for r in answered), len(rows), len(answered)

    def wilson(k, n, z=1.96):  # written out again, not turing's
        p = k / n
        mid, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
        return [100 * max(0, (mid - half) / (1 + z * z / n)), 100 * min(1, (mid + half) / (1 + z * z / n))]

    if not a:  # a class whose only trial went unanswered
        return [n, a, k]
    return [n, a, k, 100 * k / n, *wilson(k, n), 100 * k / a, *wilson(k, a),
            sum(r["response_s"] for r in answered) / a]


@pytest.mark.slow
def test_a_session_in_headless_chromium(trained, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    if not os.path.exists(CHROMIUM):  # CI installs it and sets COLORGAN_REQUIRE_BROWSER: there it must run
        (pytest.fail if os.environ.get("COLORGAN_REQUIRE_BROWSER") else pytest.skip)(
            f"needs Debian's chromium at {CHROMIUM}: apt-get install chromium")
    data, checkpoints = trained / "data", trained / "runs"
    # the 6 trials: 6 of the 12 test images, spread evenly (every other one), in CIFAR-10 class folders
    classes = sorted(pathlib.Path(p).parent.name for p in list_images(str(data / "test"))[::2])
    results = tmp_path / "results.jsonl"
    server = subprocess.Popen(
        [sys.executable, "test_turing.py", "--checkpoints-path", str(checkpoints), "--name", "run",
         "--dataset-path", str(data), "--turing-test-size", "6", "--turing-test-delay", "1", "--port", "0",
         "--display-size", "96", "--results", str(results), "--no-browser"],
        cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        out = []
        while not (out and out[-1].startswith("Open ")):
            out.append(server.stdout.readline())
            assert out[-1] or server.poll() is None, "".join(out)
        url = out[-1].split()[1]
        assert url.startswith("http://127.0.0.1:")
        actions = ["click left", "key ArrowRight", "click right", "wait", "key ArrowLeft", "click left"]
        served = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.on("response", lambda r: served.append((r.url, r.headers.get("content-length"))))
            page.goto(url)
            page.fill("#name", "tester")
            page.click("button")
            for number, action in enumerate(actions, 1):
                expect(page.locator("#count")).to_have_text(f"{number} / 6")
                page.locator("#left").wait_for(state="visible")  # both images loaded: the pair is shown
                kind, _, what = action.partition(" ")
                if kind == "click":
                    page.click("#" + what)
                elif kind == "key":
                    page.keyboard.press(what)
            page.wait_for_selector("#done", state="visible", timeout=15000)
            page_summary = page.inner_text("#summary")
            browser.close()
        time.sleep(0.5)  # the server prints its summary when the participant finishes
        server.kill()  # no clean shutdown: the rows must already be on disk
        out.append(server.communicate(timeout=10)[0])
    finally:
        server.kill()

    rows = read_rows(results)
    assert [r["trial"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["choice"] for r in rows] == ["left", "right", "right", None, "left", "left"]
    for row in rows:
        assert set(turing.ROW_TYPES) <= set(row) and row["participant"] == "tester" and row["delay"] == 1
        assert row["real_side"] in turing.SIDES and row["fooled"] == (row["choice"] not in (None, row["real_side"]))
        assert row["class"] in classes and row["image"].startswith("test")
        assert (row["response_s"] >= 1.0) if row["choice"] is None else (row["response_s"] < 1.0 + turing.GRACE)
    assert sorted(r["class"] for r in rows) == classes
    assert len({r["image"] for r in rows}) == 6

    # What the browser got: opaque names and images of one byte size, real and colourised alike.
    images = [(u, size) for u, size in served if "/img/" in u]
    assert len(images) == 12 and all(re.fullmatch(r"http://127\.0\.0\.1:\d+/img/" + ID, u) for u, _ in images)
    assert len({size for _, size in images}) == 1

    summary = subprocess.run([sys.executable, "test_turing.py", "--summarize", str(results)], cwd=ROOT,
                             capture_output=True, text=True, timeout=300, check=True).stdout
    # the participant's page reveals nothing about which side was real: the figures are the experimenter's
    assert page_summary == "6 answers recorded. The results are with the experimenter."
    for text in (summary, "".join(out)):  # --summarize and the server agree
        assert summary_line(text, "all") == pytest.approx(expected_line(rows), abs=0.051)
        assert summary_line(text, "participant tester") == summary_line(text, "all")
        for label in set(classes):
            group = [r for r in rows if r["class"] == label]
            assert summary_line(text, "class " + label)[:3] == expected_line(group)[:3]
    assert "tester finished" in "".join(out)
    assert os.path.isfile(tmp_path / "results.png")

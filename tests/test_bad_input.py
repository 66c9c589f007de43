"""Bad input a user can reach: each command stops with one line that names the problem, writes
nothing outside its output, and shows no traceback."""
import importlib.util
import json
import math
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

import train as train_py
from colorgan import evaluation, files, sources
from colorgan.config import UserError
from tests.conftest import ROOT, tiny_args


def one_line_error(call, match: str):
    with pytest.raises(UserError, match=match) as error:
        call()
    assert "\n" not in str(error.value), str(error.value)


@pytest.fixture
def folder(tmp_path):
    """train/ and test/ with two colour images each."""
    for split in ("train", "test"):
        (tmp_path / "data" / split).mkdir(parents=True)
        for i in range(2):
            rgb = np.random.default_rng(i).integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(tmp_path / "data" / split / f"{i}.png")
    return tmp_path / "data"


@pytest.mark.parametrize("flags,match", [
    (["--save-interval", "0"], "--save-interval must be at least 1"),
    (["--sample-interval", "0"], "--sample-interval must be at least 1"),
    (["--max-steps", "-1"], "--max-steps cannot be negative"),
    (["--seed", "-3"], "--seed cannot be negative"),
    (["--lr", "-1"], "--lr must be positive"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--lr", "1e9"], "--lr must be positive and at most 1"),
    (["--l1-weight", "-5"], "--l1-weight cannot be negative"),
    (["--beta1", "1"], "--beta1 must be at least 0 and below 1"),
    (["--beta1", "-0.1"], "--beta1 must be at least 0 and below 1"),
    (["--width", "0"], "--width must be positive"),
    (["--name", "../../escape"], "--name must be one folder name"),
    (["--name", "/some/where"], "--name must be one folder name"),
    (["--name", ".."], "--name must be one folder name"),
    (["--name", " "], "--name must be one folder name"),
    (["--name", "a\nb"], "--name must be one folder name"),
    (["--name=-x"], "--name must be one folder name"),
    (["--name", ".hidden"], "--name must be one folder name"),
    (["--name", "n" * 252], "--name is 252 bytes long: at most 200"),
])
def test_nonsense_flags(folder, tmp_path, flags, match):
    one_line_error(lambda: train_py.main(tiny_args(folder, tmp_path / "runs", *flags)), match)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"batch_size": "many"}', '{"batch_size": 3.5}',
                                     '{"l1_weight": -5}', '{"name": "../x"}', '{"mixed_precision": "float128"}',
                                     '{"backbone": "foo"}', '{"model": "transformer"}', '{"color_space": "xyz"}'])
def test_broken_config_json_for_train_and_eval(folder, tmp_path, content):
    (tmp_path / "runs" / "run").mkdir(parents=True)
    (tmp_path / "runs" / "run" / "config.json").write_text(content)
    for call in (lambda: train_py.main(tiny_args(folder, tmp_path / "runs")),
                 lambda: evaluation.main(["--checkpoints-path", str(tmp_path / "runs"), "--name", "run"])):
        one_line_error(call, "config.json: not a config.json that train.py wrote")
    assert (tmp_path / "runs" / "run" / "config.json").read_text() == content


@pytest.mark.parametrize("value, match", [
    ("{not json", "TF_CONFIG is not JSON"), ("[1, 2]", "must be a JSON object"),
    ('{"cluster": 3, "task": {}}', "must be a JSON object"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "ps", "index": 0}}', "workers and at most one "
     "chief; not ps"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}', "task worker 2 is not in the "
     "cluster, which has 2 worker"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}', "task chief 0 is not in the cluster"),
    ('{"cluster": {"worker": ["no port"]}, "task": {"type": "worker", "index": 0}}', '"host:port" addresses')])
def test_a_broken_tf_config(folder, tmp_path, monkeypatch, value, match):
    monkeypatch.setenv("TF_CONFIG", value)
    one_line_error(lambda: train_py.main(tiny_args(folder, tmp_path / "runs")), match)
    assert not (tmp_path / "runs").exists()


def test_a_tf_config_port_in_use(folder, tmp_path, monkeypatch):
    with socket.socket() as holder:
        holder.bind(("", 0))
        holder.listen()
        port = holder.getsockname()[1]
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": [f"localhost:{port}", "localhost:1"]},
                                                    "task": {"type": "worker", "index": 0}}))
        one_line_error(lambda: train_py.main(tiny_args(folder, tmp_path / "runs")), f"port {port} cannot be used")
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
@pytest.mark.parametrize("stop, index", [("SIGTERM", 0), ("timeout", 0), ("timeout", 1)])  # 0: the leader
def test_a_worker_whose_peers_never_start_says_so_and_stops(folder, tmp_path, stop, index):
    from tests.conftest import free_ports
    ports = free_ports(2)
    other = ports[1 - index]
    env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CONFIG=json.dumps(
        {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}))
    args = tiny_args(folder, tmp_path / "runs", *(["--join-timeout", "3"] if stop == "timeout" else []))
    process = subprocess.Popen([sys.executable, "train.py", *args], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        lines = []
        for line in process.stdout:  # the first thing it says: what it waits for
            lines.append(line)
            if "waiting for the 1 other(s)" in line:
                break
        assert f"127.0.0.1:{other}" in lines[-1], lines
        if stop == "SIGTERM":
            time.sleep(2)  # inside the wait by now
            process.send_signal(signal.SIGTERM)
        out, _ = process.communicate(timeout=60)
    finally:
        process.kill()  # a hung worker must not outlive the test
    if stop == "SIGTERM":
        assert process.returncode == 128 + signal.SIGTERM and "SIGTERM while waiting for the other workers" in out
    else:
        assert process.returncode == 1 and f"127.0.0.1:{other} did not start within 3 s" in out, out
    assert not (tmp_path / "runs").exists()


def test_checkpoints_path_that_is_a_file(folder, tmp_path):
    (tmp_path / "runs").write_text("a file")
    one_line_error(lambda: train_py.main(tiny_args(folder, tmp_path / "runs")), "is a file: give a folder")


@pytest.mark.parametrize("kind", ["unreadable", "gray"])
def test_a_folder_of_only_unusable_images(tmp_path, kind):
    for split in ("train", "test"):
        (tmp_path / "data" / split).mkdir(parents=True)
        for i in range(3):
            path = tmp_path / "data" / split / f"{i}.png"
            if kind == "gray":
                Image.fromarray(np.full((32, 32, 3), 90 + i, np.uint8)).save(path)
            else:
                path.write_bytes(b"\x89PNG not really")
    one_line_error(lambda: train_py.main(tiny_args(tmp_path / "data", tmp_path / "runs")),
                   "not one of them is a usable colour image")


@pytest.mark.slow
def test_evaluation_outputs_are_checked_before_the_work(trained, tmp_path):
    run = ["--checkpoints-path", str(trained / "runs" / "run")]
    one_line_error(lambda: evaluation.main([*run, "--json", str(tmp_path / "missing" / "r.json")]),
                   "its folder does not exist")
    (tmp_path / "in").mkdir()
    one_line_error(lambda: evaluation.main([*run, "--json", str(tmp_path / "in")]), "is a folder: give a file name")
    (tmp_path / "file").write_text("x")
    one_line_error(lambda: evaluation.main([*run, "--eval-output", str(tmp_path / "file")]), "is a file: give a folder")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "in" / "a.png")
    one_line_error(lambda: evaluation.main([*run, "--test-input", str(tmp_path / "in"),
                                              "--test-output", str(tmp_path / "file")]), "is a file")
    one_line_error(lambda: evaluation.main([*run, "--test-input", str(tmp_path / "in"),
                                              "--test-output", str(tmp_path / "in")]), "separate folder")
    for flag in ("--max-images", "--render-size"):
        with pytest.raises(SystemExit):
            evaluation.main([*run, flag, "-5"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "in"]


def test_turing_port_and_results_are_checked(trained, tmp_path):
    spec = importlib.util.spec_from_file_location("turing_command", ROOT / "test_turing.py")
    command = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(command)
    turing_main = command.main
    run = ["--checkpoints-path", str(trained / "runs" / "run"), "--no-browser"]
    one_line_error(lambda: turing_main([*run, "--port", "70000"]), "a port is 0-65535")
    one_line_error(lambda: turing_main([*run, "--results", str(tmp_path)]), "is a folder")
    one_line_error(lambda: turing_main([*run, "--turing-test-delay", "nan"]), "--turing-test-delay a number of seconds")


def test_one_output_that_cannot_be_written_is_listed_and_the_others_are_written(trained, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for name in ("p1", "p2", "p3"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8) + 60).save(tmp_path / "in" / f"{name}.png")
    (tmp_path / "out" / "p2.png").mkdir(parents=True)  # a folder in the way of one output
    failed = evaluation.main(["--checkpoints-path", str(trained / "runs" / "run"), "--test-input",
                              str(tmp_path / "in"), "--test-output", str(tmp_path / "out")])
    assert len(failed) == 1 and "p2.png" in failed[0] and "taken by a folder" in failed[0]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p1.png", "p2.png", "p3.png"]
    assert (tmp_path / "out" / "p1.png").is_file() and (tmp_path / "out" / "p3.png").is_file()
    assert "1 file(s) not colourised" in capsys.readouterr().out


def test_an_output_folder_that_cannot_be_written_is_refused_before_the_work(trained, tmp_path, capsys):
    # root writes past any mode bits: the kernel's own folders refuse it
    read_only = "/sys/colorgan-test" if os.geteuid() == 0 else str(tmp_path / "read-only")
    if os.geteuid() != 0:
        os.mkdir(read_only, 0o555)
    run = ["--checkpoints-path", str(trained / "runs" / "run")]
    for flags in (["--json", os.path.join(read_only, "r.json")], ["--eval-output", os.path.join(read_only, "eval")],
                  ["--test-input", str(trained / "data" / "test"), "--test-output", os.path.join(read_only, "o")]):
        if flags[0] == "--json" and os.geteuid() == 0:
            continue  # /sys/colorgan-test does not exist: --json says its folder does not exist, as above
        one_line_error(lambda: evaluation.main([*run, *flags]), "cannot write .*(Permission denied|Read-only file"
                       "|Operation not permitted)")
        assert "evaluated" not in capsys.readouterr().out  # before the work


def test_a_device_or_fifo_as_an_output_is_refused_and_left_as_it_is(trained, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # as /dev/full or /dev/zero would be: an atomic write renames over it, a read never ends
    run = ["--checkpoints-path", str(trained / "runs" / "run")]
    one_line_error(lambda: evaluation.main([*run, "--json", str(fifo)]), "--json .*fifo: it is not a regular file")
    spec = importlib.util.spec_from_file_location("turing_command", ROOT / "test_turing.py")
    command = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(command)
    one_line_error(lambda: command.main([*run, "--no-browser", "--results", str(fifo)]),
                   "--results .*fifo: it is not a regular file")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and sorted(os.listdir(tmp_path)) == ["fifo"]


def test_a_long_input_name_is_colourised_and_a_link_to_the_input_is_not_an_output(trained, tmp_path):
    (tmp_path / "in").mkdir()
    name = "n" * 246 + ".png"  # 250 bytes: its output name is legal, and so must be its temporary name
    Image.fromarray(np.zeros((8, 8, 3), np.uint8) + 90).save(tmp_path / "in" / name)
    run = ["--checkpoints-path", str(trained / "runs" / "run"), "--test-input", str(tmp_path / "in")]
    assert evaluation.main([*run, "--test-output", str(tmp_path / "out")]) == []
    assert os.listdir(tmp_path / "out") == [name]
    (tmp_path / "link").symlink_to(tmp_path / "in")
    one_line_error(lambda: evaluation.main([*run, "--test-output", str(tmp_path / "link")]), "separate folder")
    assert os.listdir(tmp_path / "in") == [name]


def test_the_debris_of_killed_writes_is_removed_by_the_next_run(folder, trained, tmp_path):
    run_dir = tmp_path / "runs" / "run"
    (run_dir / "samples").mkdir(parents=True)  # what a SIGKILL during the export and a sample grid leaves
    debris = [run_dir / ".generator.keras.colorgan-partial-k2j_x9a1.tmp.keras",
              run_dir / "samples" / ".step_0000001.png.colorgan-partial-a1b2c3d4.tmp.png"]
    for path in debris:
        path.write_bytes(b"half")
    train_py.main(tiny_args(folder, tmp_path / "runs", "--max-steps", "1", "--batch-size", "2"))  # no "earlier run"
    assert not any(path.exists() for path in debris) and (run_dir / "generator.keras").is_file()
    with files.atomic_path(str(tmp_path / "x.png")) as temporary:
        assert files.DEBRIS.fullmatch(os.path.basename(temporary))  # what colorgan writes is what it removes
    assert not any(files.DEBRIS.fullmatch(name) for name in (".mine", ".notes.tmp", ".a.b.tmp", "a.png.a1b2c3d4.tmp"))
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8) + 90).save(tmp_path / "in" / "a.png")
    (tmp_path / "out" / "sub").mkdir(parents=True)
    out = tmp_path / "out"
    old, young = out / ".a.png.colorgan-partial-0aq3kx7m.tmp.png", out / ".b.png.colorgan-partial-zzzzzzzz.tmp.png"
    # a user's own files in an ordinary output folder (Pictures), of the shape colorgan's once had
    theirs = [out / ".backup.20241207.tmp", out / ".notes.abcdefgh.tmp.txt", out / "sub" / ".x.12345678.tmp.png"]
    for path in old, young, *theirs:
        path.write_bytes(b"half")
        os.utime(path, (0, 0))
    os.utime(young, None)  # young may be another colourising job's write in progress: it stays
    evaluation.main(["--checkpoints-path", str(trained / "runs" / "run"), "--test-input", str(tmp_path / "in"),
                     "--test-output", str(out)])
    assert sorted(os.listdir(out)) == sorted([young.name, "a.png", "sub", theirs[0].name, theirs[1].name])
    assert theirs[2].exists()


def test_compared_runs_of_one_name_are_told_apart_and_a_run_twice_is_refused(trained, tmp_path):
    for parent in "ab":  # two runs under the default --name, as every `python train.py` makes
        shutil.copytree(trained / "runs" / "ab", tmp_path / parent / "CGAN")
    first, second = str(tmp_path / "a" / "CGAN"), str(tmp_path / "b" / "CGAN")
    report = evaluation.main(["--checkpoints-path", first, "--compare", second, "--max-images", "4",
                              "--eval-output", str(tmp_path / "eval")])
    assert [row["name"] for row in report["rows"]] == [first, second, "gray baseline", "ground truth"]
    assert 0 <= report["rows"][0]["c2st"] <= 1 and math.isnan(report["rows"][-1]["c2st"])  # 2 + 2 halves: no probe
    one_line_error(lambda: evaluation.main(["--checkpoints-path", first, "--compare", first + "/"]), "a run twice")


def test_a_garbage_generator_is_named_as_such(trained, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_bytes((trained / "runs" / "run" / "config.json").read_bytes())
    (run / "generator.keras").write_bytes(b"garbage")
    one_line_error(lambda: evaluation.main(["--checkpoints-path", str(run)]), "not a .keras file")


@pytest.mark.parametrize("change", [{"width": 0.25}, {"dataset": "places365"}, {"model": "encoder-decoder"}])
def test_a_config_json_that_does_not_describe_its_generator(trained, tmp_path, change):
    run = tmp_path / "run"
    shutil.copytree(trained / "runs" / "run", run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, **change}))
    one_line_error(lambda: evaluation.main(["--checkpoints-path", str(run), "--test-input", str(run / "samples")]),
                   r"does not fit its config.json: its encoder's channels are \[8, 16, 32, 64, 64\]")


def test_same_stem_inputs_get_distinct_outputs(trained, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in" / "c1.jpg")
    Image.fromarray(rgb).save(tmp_path / "in" / "c1.png")
    Image.fromarray(rgb).save(tmp_path / "in" / "c2.jpg")
    evaluation.main(["--checkpoints-path", str(trained / "runs" / "run"), "--test-input", str(tmp_path / "in"),
                       "--test-output", str(tmp_path / "out")])
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["c1.jpg.png", "c1.png.png", "c2.png"]
    assert "keep their extension" in capsys.readouterr().out


@pytest.mark.slow
def test_the_command_line_shows_one_line_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "train.py", "--save-interval", "0", "--checkpoints-path",
                             str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip() == "error: --save-interval must be at least 1 (got 0)"


@pytest.mark.slow
def test_a_checkpoints_path_that_cannot_be_written_is_one_line(folder, tmp_path):
    if os.geteuid() == 0:  # root writes past any mode bits: the kernel's own folder refuses it
        target = "/sys/colorgan-test/runs"
    else:
        (tmp_path / "read-only").mkdir(mode=0o555)
        target = str(tmp_path / "read-only" / "runs")
    result = subprocess.run([sys.executable, "train.py", *tiny_args(folder, target)], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert re.fullmatch(r"error: (Operation not permitted|Permission denied|Read-only file system): /\S+",
                        result.stderr.strip()), result.stderr


def test_a_second_ctrl_c_while_training_saves_is_one_line(capsys):
    from colorgan import stopping
    from colorgan.config import run_command
    stop = stopping.Stop()
    try:
        stop.handle(signal.SIGINT, None)  # the first: save after this step
        assert stop.signal == "SIGINT"
        with pytest.raises(SystemExit) as exited:
            run_command(lambda: stop.handle(signal.SIGINT, None))  # the second, while it saves: stop now
    finally:
        stop.restore()
    assert exited.value.code == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "resumes from its last checkpoint" in err


@pytest.mark.slow
def test_ctrl_c_during_test_eval_is_one_line(tmp_path, photos):
    inputs = tmp_path / "photos"
    inputs.mkdir()
    for i in range(300):  # many short steps: an interrupt is taken between two of them
        shutil.copy(photos[0], inputs / f"{i}.png")
    process = subprocess.Popen([sys.executable, "test_eval.py", "--test-input", str(inputs), "--test-output",
                                str(tmp_path / "out")], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=dict(os.environ, PYTHONUNBUFFERED="1"),
                               # as from a terminal: pytest-xdist's workers ignore SIGINT, and a child inherits that
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        assert process.stdout.readline().startswith("model: ")  # the shipped model
        assert process.stdout.readline().startswith("colourising 300 image(s)")  # at work now
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 130 and "Traceback" not in err, err
    assert err.strip().startswith("interrupted: files written before it are whole")
    assert not [p for p in (tmp_path / "out").rglob("*") if files.DEBRIS.fullmatch(p.name)]  # no half-written file


@pytest.mark.slow
def test_an_empty_folder_is_one_line_after_no_tensorflow_log(tmp_path):
    (tmp_path / "empty").mkdir()
    command = [sys.executable, "train.py", "--dataset", "folder", "--dataset-path", str(tmp_path / "empty"),
               "--checkpoints-path", str(tmp_path)]
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # colorgan's own default
    log_line = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\]|absl::InitializeLog", re.M)
    quiet = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert quiet.returncode == 1 and quiet.stderr.strip().endswith("no images (.jpg, .jpeg, .png, .bmp, .gif, "
                                                                   ".tif, .tiff, .webp) for the train split")
    assert not log_line.search(quiet.stdout + quiet.stderr), quiet.stderr
    assert quiet.stderr.count("\n") == 1 and len(quiet.stdout.splitlines()) == 1  # the error; the changed settings
    assert not (tmp_path / "CGAN").exists()  # no run folder without data
    loud = subprocess.run(command, cwd=ROOT, env=dict(env, TF_CPP_MIN_LOG_LEVEL="0"), capture_output=True, text=True,
                          timeout=120)
    assert loud.returncode == 1 and log_line.search(loud.stderr)  # a user's own level wins


def test_a_refused_run_leaves_nothing_and_blocks_no_name(folder, tmp_path):
    runs = tmp_path / "runs"
    one_line_error(lambda: train_py.main(tiny_args(folder, runs, "--image-size", "8", "--name", "img8")),
                   "not a multiple of the generator's stride")
    assert not runs.exists() or os.listdir(runs) == []  # no img8/, no .img8.lock
    gray = tmp_path / "gray"
    for split in ("train", "test"):
        (gray / split).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((32, 32, 3), 40 * i + 60, np.uint8)).save(gray / split / f"{i}.png")
    args = tiny_args(gray, runs, "--name", "gray", "--max-steps", "1", "--batch-size", "2")
    one_line_error(lambda: train_py.main(args), "not one of them is a usable colour image")
    assert os.listdir(runs) == []  # no config.json, logs/ or lock
    (runs / "gray").mkdir()  # what an earlier colorgan's refusal left: a config.json, logs/
    (runs / "gray" / "logs").mkdir()
    (runs / "gray" / "config.json").write_text(json.dumps({"dataset": "folder", "width": 2.0}))
    for split in ("train", "test"):
        for i in range(2):
            shutil.copy(folder / split / f"{i}.png", gray / split / f"colour{i}.png")
    sources.load_source.cache_clear()  # a new command is a new process
    train_py.main(args)  # the same command, now with colour photos: it trains, no --fresh needed
    assert (runs / "gray" / "generator.keras").is_file()


@pytest.mark.slow
def test_sigterm_while_test_eval_writes_is_one_line_and_leaves_no_partial_file(tmp_path, photos):
    inputs = tmp_path / "photos"
    inputs.mkdir()
    for i in range(300):
        shutil.copy(photos[0], inputs / f"{i}.png")
    process = subprocess.Popen([sys.executable, "test_eval.py", "--test-input", str(inputs), "--test-output",
                                str(tmp_path / "out")], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        assert process.stdout.readline().startswith("model: ")
        assert process.stdout.readline().startswith("colourising 300 image(s)")
        assert process.stdout.readline().startswith("colourised ")  # writing now
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 143 and "Traceback" not in err, err
    assert err.strip() == "SIGTERM: stopped; files written before it are whole"
    assert not [p for p in (tmp_path / "out").rglob(".*")]  # no hidden partial file


@pytest.mark.slow
def test_ctrl_c_while_starting_is_one_line(tmp_path):
    process = subprocess.Popen([sys.executable, "train.py", "--help"], cwd=ROOT, text=True, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        time.sleep(1.0)  # importing TensorFlow takes seconds
        assert process.poll() is None, "started faster than the test can interrupt it"
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
    assert process.returncode == 130 and err.strip() == "interrupted while starting", err


def test_a_ctrl_c_that_python_swallows_still_stops_the_block(capsys):
    from colorgan import stopping

    class Deleted:
        def __del__(self):  # where Python cannot raise: it prints "Exception ignored" and goes on
            os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # pytest-xdist's workers ignore it
    try:
        with pytest.raises(KeyboardInterrupt):
            with stopping.interruptible():
                Deleted()  # the handler's KeyboardInterrupt is raised inside __del__, and swallowed there
                time.sleep(0.1)  # what the block did next: the signal arrived during __del__, not here
    finally:
        signal.signal(signal.SIGINT, previous)
    assert "Exception ignored" not in capsys.readouterr().err

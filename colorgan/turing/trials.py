"""The trials of the visual Turing test: test images and their colourisations, each participant's
order, and the answers, appended to a JSON-lines file and fsynced the moment they arrive."""
import dataclasses
import fcntl
import io
import json
import os
import secrets
import threading
import time
from datetime import datetime, timezone

import numpy as np
from PIL import Image

from colorgan import files
from colorgan.config import UserError
from colorgan.turing.stats import SIDES, read_results

GRACE = 0.5  # seconds an answer may arrive after its pair disappeared (network, drawing)

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


def _describe(full, source, index: int, root: str) -> tuple[str, str]:
    """(key, class) of image index of source, a spread of the whole test split full."""
    if source.paths is None:  # arrays and TFDS streams: where the image stands in the split
        return f"test[{index * full.size // source.size if source.stream is None else index}]", "unknown"
    path = source.paths[index]
    if source.labels is not None:  # CIFAR-10 class folders, MiniPlaces' val.txt
        return os.path.relpath(path, root), source.classes[source.labels[index]]
    folder = os.path.basename(os.path.dirname(os.path.relpath(path, root)))
    return os.path.relpath(path, root), folder if folder not in ("", "test", "val_256") else "unknown"


def prepare_items(colorizer, size: int, display_size: int = 256) -> list[Item]:
    """size test images, spread over the split (every class of a class-ordered
    folder) and read as evaluation reads them, with their colourisations as display-size PNGs."""
    from colorgan import color, data, sources
    config = colorizer.config
    full = sources.load_source(config.dataset, config.dataset_path, "test", config.seed)
    source = sources.spread(full, size)
    skipped = data.Skipped()
    # 32 images of 256 px at a time fit a laptop
    batches = data.make_dataset(dataclasses.replace(config, batch_size=32), "test", skipped=skipped, source=source)
    items = []
    for batch in batches:
        fake = color.to_uint8(colorizer.batch(batch["gray"])).numpy()
        for i, r, f in zip(batch["index"].numpy(), batch["rgb"].numpy(), fake):
            items.append(Item(*_describe(full, source, int(i), config.dataset_path or "."),
                              to_png(r, display_size), to_png(f, display_size)))
    if skipped.gray or skipped.unreadable:
        print(f"note: {len(items)} of {source.size} test images; {skipped}")
    if not items:
        raise UserError("no colour image in the test split for the Turing test")
    return items


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
    shown: float | None = None  # when its first image was served: the clock of the delay
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
        self.moved = False  # the results file was moved away: told once
        files.refuse_special(results_path, "--results")  # a device or FIFO would never end the read below
        os.makedirs(os.path.dirname(os.path.abspath(results_path)), exist_ok=True)
        self.file = self._open_locked()
        for row in read_results([results_path]):
            self.done.setdefault(row["participant"], set()).add(row["image"])
        if self.file.tell() and not _ends_with_newline(results_path):
            self._append(b"\n")  # a crash mid-row left a partial line: start a fresh one

    def _open_locked(self):
        """The results file, opened to append and locked for this process: a second server on it
        would serve every participant each image again and count both answers."""
        # Unbuffered: a write that fails leaves no bytes behind to be flushed with a later row. Readable
        # too: a file deleted meanwhile is written back from this copy.
        f = open(self.path, "a+b", buffering=0)
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise UserError(f"{self.path} is in use by another test_turing.py: stop it first, or give this one "
                            "its own --results") from None
        return f

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
        """An image of an open trial. The first one served starts the trial's clock: a client that
        fetched one image has seen it, whenever it asks for the other."""
        with self.lock:
            trial, side = self.images.get(image_id, (None, None))
            if trial is None or trial.answered or self._expired(trial):
                return None
            trial.served.add(side)
            trial.shown = trial.shown or time.monotonic()
            return trial.image(side)

    def shown(self, trial: Trial):
        """The pair is on screen (the desktop window draws both at once)."""
        with self.lock:
            trial.served.update(SIDES)
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
            if choice is not None and not late and len(trial.served) < 2:
                raise Rejected(409, "this trial's images were not both shown: load them before answering")
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
        try:
            self._append((json.dumps(row) + "\n").encode())
        except OSError as error:  # the trial stays open: the participant's retry records it once
            raise Rejected(503, f"the answer could not be saved ({error.strerror or error}); try again") from None
        trial.answered = True
        del self.pending[trial.participant]
        self.done.setdefault(trial.participant, set()).add(trial.item.key)
        return row

    def _append(self, data: bytes):
        """Append data whole and on disk (fsync) before anyone sees the next pair, or not at all."""
        self._check_file()
        start = os.fstat(self.file.fileno()).st_size
        try:
            written = 0
            while written < len(data):
                written += self.file.write(data[written:])
            os.fsync(self.file.fileno())
        except OSError:
            try:
                os.ftruncate(self.file.fileno(), start)  # a part-written row must not stay
            except OSError:
                pass
            raise


    def _check_file(self):
        """An answer is acknowledged only once it is in the file the experimenter named: one deleted
        meanwhile is written back from the open copy; one moved or replaced refuses answers."""
        held = os.fstat(self.file.fileno())
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            named = None
        if named and (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino):
            return
        if named is None and held.st_nlink == 0:
            with files.atomic_path(self.path) as temporary, open(temporary, "wb") as new:
                new.write(os.pread(self.file.fileno(), held.st_size, 0))
                new.flush()
                os.fsync(new.fileno())
            self.file.close()
            self.file = self._open_locked()
            print(f"warning: {self.path} was deleted while the test ran: written back with its answers so far",
                  flush=True)
            return
        if not self.moved:
            self.moved = True
            print(f"warning: {self.path} was moved or replaced while the test ran: answers are refused until "
                  "the server is restarted (it then resumes each participant)", flush=True)
        raise OSError(f"the results file {self.path} was moved or replaced")


def _ends_with_newline(path: str) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"

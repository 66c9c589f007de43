"""The authors' desktop window: one local participant, in matplotlib."""
import io
import time

from PIL import Image

from colorgan.config import UserError
from colorgan.turing.stats import report
from colorgan.turing.trials import SIDES, TuringTest

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

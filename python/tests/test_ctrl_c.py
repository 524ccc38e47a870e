"""Ctrl-C stops a long call of the Python bindings (issue 11, defect 10): fits in a child process,
transform, fisher_diag and fisher_distance in this one; the model stays usable.
"""
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import nfk


LONG_FIT = textwrap.dedent("""
    import sys
    import numpy as np
    import nfk
    nfk.set_num_threads(1)
    model, out, method, then = sys.argv[1:]
    x = np.random.default_rng(0).random((64, 1, 8, 8), dtype=np.float32)
    short = nfk.NFK(model, "classifier", rank=4, method=method, power_iters=2, batch_size=16,
                    verbose=0)
    sigma = short.fit(x).singular_values_
    m = nfk.NFK(model, "classifier", rank=4, method=method, power_iters=100000, tol=0,
                solver="subspace", batch_size=16, verbose=0)
    print("fitting", flush=True)
    try:
        m.fit(x)
        m.save(out)
    except KeyboardInterrupt:
        if then == "raise":
            raise
        # The interrupted estimator is unchanged; the process fits again, to the same numbers.
        assert not hasattr(m, "projector_")
        print("again", np.array_equal(short.fit(x).singular_values_, sigma), flush=True)
""")


@pytest.mark.parametrize("method", ["per-example", "matrix-free"])
@pytest.mark.parametrize("then", ["raise", "fit-again"])
def test_ctrl_c_stops_a_long_fit(d, tmp_path, method, then):
    script, out = tmp_path / "long_fit.py", tmp_path / "out.nfk"
    script.write_text(LONG_FIT)
    p = subprocess.Popen([sys.executable, str(script), str(d / "cnn.pt"), str(out), method, then],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "fitting\n"
        time.sleep(1.5)  # inside the fit's loops by now
        assert p.poll() is None
        p.send_signal(signal.SIGINT)
        start = time.monotonic()
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pytest.fail("a SIGINT did not stop the fit within 15 s")
        assert time.monotonic() - start < 10
        stdout, stderr = p.stdout.read(), p.stderr.read()
        if then == "raise":
            assert p.returncode != 0
            assert stderr.strip().splitlines()[-1] == "KeyboardInterrupt", stderr
        else:
            assert p.returncode == 0, stderr
            assert stdout == "again True\n"
        assert not out.exists()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


class Interrupted(Exception):
    pass


@contextlib.contextmanager
def sigint_after(seconds):
    """Sends this process SIGINT after `seconds`; the signal raises Interrupted (not
    KeyboardInterrupt, which would end the pytest session if it came late)."""
    def handler(signum, frame):
        raise Interrupted

    previous = signal.signal(signal.SIGINT, handler)
    timer = threading.Timer(seconds, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        timer.join()
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_stops_transform_fisher_and_distance(fitted, d, x, ref):
    big = np.repeat(x, 8000, axis=0)  # 512,000 examples: 15-30 s each, uninterrupted
    calls = {
        "transform": lambda: fitted.transform(big, batch_size=16),
        "fisher_diag": lambda: nfk.fisher_diag(d / "cnn.pt", big, kind="classifier",
                                               batch_size=16),
        "fisher_distance": lambda: nfk.fisher_distance(fitted, big, big, batch_size=16),
    }
    for name, call in calls.items():
        start, returned = time.monotonic(), False
        with pytest.raises(Interrupted):
            with sigint_after(0.5):
                call()
                returned = True
        assert not returned, f"{name} ended before the signal: give it more work"
        assert time.monotonic() - start < 6, name
    # The interrupted model is still usable and gives the same numbers.
    assert np.array_equal(fitted.transform(x), ref)

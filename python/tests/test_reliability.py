"""Reliability of the Python bindings (issue 11): every input either converts to the values it
holds or raises one clear ValueError/TypeError; `import nfk` leaves PyTorch's exceptions alone;
Ctrl-C stops a long call; options are checked before any work with one line; LibTorch warnings
come out as `warnings.warn`; misuse raises, never crashes.

Run as test_nfk.py is (ctest `python_bindings`, or
    PYTHONPATH=build/python NFK_CLI=build/nfk /usr/bin/python3 -m pytest -q python/tests).
"""
import contextlib
import io
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings

import numpy as np
import pytest
import torch

import nfk

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "cli"))
from torchscript_interop import Cnn, Disc, Gen  # noqa: E402

N = 64
nfk.set_num_threads(1)


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    d = tmp_path_factory.mktemp("nfk_reliability")
    torch.manual_seed(0)
    torch.jit.script(Cnn().eval()).save(str(d / "cnn.pt"))
    torch.jit.script(Disc().eval()).save(str(d / "disc.pt"))
    torch.jit.script(Gen().eval()).save(str(d / "gen.pt"))
    return d


@pytest.fixture(scope="module")
def x():
    return np.random.default_rng(0).random((N, 1, 8, 8), dtype=np.float32)


@pytest.fixture(scope="module")
def fitted(d, x):
    return nfk.NFK("classifier", rank=4, seed=1).fit(str(d / "cnn.pt"), x)


@pytest.fixture(scope="module")
def ref(fitted, x):
    """transform of the plain float32 C-order array: what every other form must give."""
    return fitted.transform(x)


def one_line(e):
    text = str(e.value)
    assert "\n" not in text, text
    assert text.startswith("nfk"), text
    return text


# --- 1. arrays: converted to the values they hold, or refused (defect 6) ------------------------

def test_big_endian_arrays_are_converted_not_misread(fitted, x, ref, d):
    assert np.array_equal(fitted.transform(x.astype(">f4")), ref)
    x64 = x.astype(np.float64)
    assert np.array_equal(fitted.transform(x64.astype(">f8")), fitted.transform(x64))
    xi = (x * 100).astype(np.int64)
    for dt in (">i8", ">i4", ">i2", ">u2"):
        assert np.array_equal(fitted.transform(xi.astype(dt)),
                              fitted.transform(xi.astype(np.float32))), dt
    # Through the fit too: the Fisher statistics of a big-endian copy are the native ones.
    i_native = nfk.fisher_diag(d / "cnn.pt", x64, kind="classifier")
    assert np.array_equal(nfk.fisher_diag(d / "cnn.pt", x64.astype(">f8"), kind="classifier"),
                          i_native)


def test_strided_arrays_are_copied(fitted, x, ref, d):
    flipped = x[::-1]  # negative stride
    assert np.array_equal(fitted.transform(flipped), ref[::-1])
    wide = np.zeros((N, 1, 8, 16), np.float32)
    wide[..., ::2] = x
    assert np.array_equal(fitted.transform(wide[..., ::2]), ref)  # non-contiguous view
    assert np.array_equal(fitted.transform(np.asfortranarray(x)), ref)
    mirrored = np.flip(x, axis=3)
    assert np.array_equal(fitted.transform(mirrored), fitted.transform(mirrored.copy()))
    readonly = x.copy()
    readonly.flags.writeable = False
    assert np.array_equal(fitted.transform(readonly), ref)
    assert np.array_equal(fitted.transform(x.tolist()), ref)  # nested lists
    np.save(d / "x_big_endian.npy", x.astype(">f4"))
    assert np.array_equal(fitted.transform(np.load(d / "x_big_endian.npy", mmap_mode="r")), ref)
    assert np.array_equal(fitted.transform(np.ma.masked_array(x)), ref)  # nothing masked
    with pytest.raises(ValueError, match="masked entries") as e:
        fitted.transform(np.ma.masked_array(x, mask=x > 0.5))
    one_line(e)


def test_other_dtypes_convert_to_their_values(fitted, x):
    u8 = (x * 255).astype(np.uint8)
    assert np.array_equal(fitted.transform(u8),
                          fitted.transform(u8.astype(np.float32) / np.float32(255)))
    f16 = x.astype(np.float16)
    assert np.array_equal(fitted.transform(f16), fitted.transform(f16.astype(np.float32)))
    ints = (x * 100).astype(np.int64)
    for dt in (np.int8, np.int16, np.int32, np.uint16, np.uint32, np.uint64):
        assert np.array_equal(fitted.transform(ints.astype(dt)),
                              fitted.transform(ints.astype(np.float32))), dt


@pytest.mark.parametrize("make,error,match", [
    (lambda x: x > 0.5, TypeError, "dtype bool"),
    (lambda x: x.astype(np.complex64), TypeError, "dtype complex"),
    (lambda x: x.astype(object), TypeError, "dtype object"),
    (lambda x: x.astype(np.longdouble), TypeError, "dtype float128"),
    (lambda x: x.astype("U3"), TypeError, "dtype <U3"),
    (lambda x: x.astype("datetime64[s]"), TypeError, "dtype datetime64"),
    (lambda x: np.zeros(N, dtype=[("a", "f4"), ("b", "f4")]), TypeError, "unsupported array"),
    (lambda x: None, TypeError, "X must be an array"),
    (lambda x: {"a": 1}, TypeError, "X must be an array"),
    (lambda x: [[1.0, 2.0], [3.0]], ValueError, "not an array"),
    (lambda x: np.float32(1), ValueError, "expected an array"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), ValueError,
     "1 NaN and 0 Inf"),
    (lambda x: np.where(np.arange(x.size).reshape(x.shape) == 7, -np.inf, x).astype(">f8"),
     ValueError, "0 NaN and 1 Inf values .first at flat index 7"),
], ids=["bool", "complex", "object", "longdouble", "str", "datetime", "structured", "None",
        "dict", "ragged", "scalar", "nan", "inf-big-endian"])
def test_unreadable_arrays_raise_one_line(fitted, d, x, make, error, match):
    bad = make(x)
    with pytest.raises(error, match=match) as e:
        fitted.transform(bad)
    one_line(e)
    with pytest.raises(error, match=match):
        nfk.fisher_diag(d / "cnn.pt", bad, kind="classifier")


def test_empty_arrays(fitted, d, x):
    # No examples is an error, as in scikit-learn ("Found array with 0 sample(s)").
    with pytest.raises(ValueError, match="holds no values") as e:
        nfk.NFK("classifier", rank=2).fit(d / "cnn.pt", x[:0])
    one_line(e)
    for empty in [x[:0], np.zeros((0,), np.float32), torch.zeros(0, 1, 8, 8)]:
        with pytest.raises(ValueError, match="holds no values") as e:
            fitted.transform(empty)
        one_line(e)


def test_torch_tensors_of_any_layout_dtype_and_device(fitted, x, ref):
    t = torch.from_numpy(x)
    forms = {
        "requires_grad": t.clone().requires_grad_(),
        "float64": t.double(),
        "channels_last": t.contiguous(memory_format=torch.channels_last),
        "transposed_twice": t.transpose(2, 3).contiguous().transpose(2, 3),
        "sliced": torch.cat([t, t], dim=3)[..., :8],
        "sparse": t.to_sparse(),
        "neg_view": torch._neg_view(-t),
    }
    for name, form in forms.items():
        assert np.array_equal(fitted.transform(form), ref), name
    expanded = t[:1].expand(N, 1, 8, 8)  # stride 0
    assert np.array_equal(fitted.transform(expanded), fitted.transform(np.repeat(x[:1], N, 0)))
    half, bf16 = t.half(), t.bfloat16()
    assert np.array_equal(fitted.transform(half), fitted.transform(half.float().numpy()))
    assert np.array_equal(fitted.transform(bf16), fitted.transform(bf16.float().numpy()))
    ints = (t * 100).to(torch.int16)
    assert np.array_equal(fitted.transform(ints), fitted.transform(ints.float().numpy()))
    u8 = (t * 255).to(torch.uint8)
    assert np.array_equal(fitted.transform(u8), fitted.transform(u8.numpy()))
    if torch.cuda.is_available():
        assert np.array_equal(fitted.transform(t.cuda()), ref)
    for bad, error, match in [(t > 0.5, TypeError, "torch.bool"),
                              (t.to(torch.complex64), TypeError, "torch.complex64"),
                              (torch.empty(N, 1, 8, 8, device="meta"), ValueError, "meta"),
                              (torch.quantize_per_tensor(t, 0.1, 0, torch.quint8), TypeError,
                               "quantized")]:
        with pytest.raises(error, match=match) as e:
            fitted.transform(bad)
        one_line(e)


# --- 2. `import nfk` leaves PyTorch's exceptions alone (defect 8) -------------------------------

TORCH_ERRORS = textwrap.dedent("""
    import io
    import sys
    if sys.argv[1] == "with-nfk":
        import nfk
    import torch

    def fails(f):
        try:
            f()
        except BaseException as e:
            print(type(e).__module__, type(e).__qualname__, repr(str(e).splitlines()[:3]))
        else:
            print("no error")

    def bad_script():
        @torch.jit.script
        def f(x: int) -> str:
            return x + 1
    lin = torch.jit.script(torch.nn.Linear(3, 2))
    fails(lambda: torch.zeros(2) @ torch.zeros(3))
    fails(bad_script)
    fails(lambda: torch.jit.load(io.BytesIO(b"not a model")))
    fails(lambda: lin(torch.zeros(4, 5)))
    fails(lambda: torch.ones(2)[5])
    fails(lambda: torch.load("/nonexistent/t.pt"))
    fails(lambda: torch.zeros(2, 2).view(5))
""")


def test_import_leaves_torch_exceptions_alone(tmp_path):
    script = tmp_path / "torch_errors.py"
    script.write_text(TORCH_ERRORS)

    def run(mode):
        r = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()

    without, with_nfk = run("without-nfk"), run("with-nfk")
    assert len(without) == 7 and "no error" not in without
    assert with_nfk == without
    # The same in this process, which imported nfk and ran it.
    with pytest.raises(RuntimeError) as e:
        torch.jit.load(io.BytesIO(b"not a model"))
    assert not str(e.value).startswith("nfk") and str(e.value)


def test_nfk_errors_are_still_translated(d, x):
    with pytest.raises(FileNotFoundError, match="(?i)^nfk: .*no such file"):
        nfk.NFK("classifier").fit(d / "nope.pt", x)
    with pytest.raises(ValueError, match="^nfk::fit: rank must be in"):
        nfk.NFK("classifier", rank=1000).fit(d / "cnn.pt", x)


# --- 3. Ctrl-C stops a long call (defect 10) ----------------------------------------------------

LONG_FIT = textwrap.dedent("""
    import sys
    import numpy as np
    import nfk
    nfk.set_num_threads(1)
    model, out, method, then = sys.argv[1:]
    x = np.random.default_rng(0).random((64, 1, 8, 8), dtype=np.float32)
    short = nfk.NFK("classifier", rank=4, method=method, power_iters=2, batch_size=16)
    sigma = short.fit(model, x).singular_values_
    m = nfk.NFK("classifier", rank=4, method=method, power_iters=100000, batch_size=16)
    print("fitting", flush=True)
    try:
        m.fit(model, x)
        m.save(out)
    except KeyboardInterrupt:
        if then == "raise":
            raise
        # The interrupted estimator is unchanged; the process fits again, to the same numbers.
        assert m.projector_ is None
        print("again", np.array_equal(short.fit(model, x).singular_values_, sigma), flush=True)
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


# --- 4. options checked first, one line each; warnings through `warnings` (defect 12) ---------

BAD_OPTIONS = [
    # (NFK constructor options, error, the parameter the message names)
    (dict(rank=10**30), ValueError, "rank"),
    (dict(rank=0), ValueError, "rank"),
    (dict(rank=4.0), TypeError, "rank"),
    (dict(rank=True), TypeError, "rank"),
    (dict(rank="8"), TypeError, "rank"),
    (dict(rank=2**62), ValueError, "rank"),
    (dict(oversample=-1), ValueError, "oversample"),
    (dict(oversample=2**63 - 1), ValueError, "oversample"),  # rank + oversample overflowed
    (dict(power_iters=2**62), ValueError, "power_iters"),  # 2 power_iters + 2 overflowed
    (dict(power_iters=2**63), ValueError, "power_iters"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=-5), ValueError, "batch_size"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed=2**64), ValueError, "seed"),
    (dict(reference_samples=-1), ValueError, "reference_samples"),
    (dict(fisher_floor=float("nan")), ValueError, "fisher_floor"),
    (dict(fisher_floor=float("inf")), ValueError, "fisher_floor"),
    (dict(fisher_floor=0.0), ValueError, "fisher_floor"),
    (dict(fisher_floor=10**400), ValueError, "fisher_floor"),
    (dict(fisher_floor="1e-8"), TypeError, "fisher_floor"),
    (dict(memory_budget_mib=-1), ValueError, "memory_budget_mib"),
    (dict(memory_budget_mib=2**44), ValueError, "memory_budget_mib"),
    (dict(latent_dim=-3), ValueError, "latent_dim"),
    (dict(output=-2), ValueError, "output"),
    (dict(method="fast"), ValueError, "method"),
    (dict(estimator="Empirical"), ValueError, "estimator"),
    (dict(dtype="float16"), ValueError, "dtype"),
    (dict(dtype=np.float32), TypeError, "dtype"),
    (dict(device="gpu"), ValueError, "device"),
    (dict(device=None), TypeError, "device"),
]


@pytest.mark.parametrize("opts,error,name", BAD_OPTIONS,
                         ids=[f"{k}={v!r}"[:40] for o, _, _ in BAD_OPTIONS for k, v in o.items()])
def test_bad_options_one_line_before_any_work(d, x, opts, error, name):
    # The model file does not exist: the option is reported first, before anything is loaded.
    with pytest.raises(error) as e:
        nfk.NFK("classifier", **opts).fit(d / "missing.pt", x)
    text = one_line(e)
    assert text.startswith(f"nfk: {name} must be "), text
    assert len(text) < 200, text


def test_bad_arguments_of_functions_one_line(d, x, fitted):
    cases = [
        (lambda: nfk.NFK("regressor").fit(d / "cnn.pt", x), ValueError, "kind"),
        (lambda: nfk.NFK(None).fit(d / "cnn.pt", x), TypeError, "kind"),
        (lambda: nfk.NFK("classifier").fit(None, x), TypeError, "a model is required"),
        (lambda: nfk.NFK("classifier").fit(42, x), TypeError, "a model is a file path"),
        (lambda: fitted.transform(x, batch_size=0), ValueError, "batch_size"),
        (lambda: fitted.transform(x, batch_size=10**30), ValueError, "batch_size"),
        (lambda: nfk.fisher_diag(d / "cnn.pt", x, kind="classifier", seed=-1), ValueError,
         "seed"),
        (lambda: nfk.fisher_diag(d / "cnn.pt", x, kind="gan", latent_dim=10**20), ValueError,
         "latent_dim"),
        (lambda: nfk.fisher_diag(d / "cnn.pt", x, kind="classifier", batch_size=2.5), TypeError,
         "batch_size"),
        (lambda: nfk.fisher_distance(fitted, x, x, batch_size=-1), ValueError, "batch_size"),
        (lambda: nfk.fisher_distance(3, x, x), TypeError, "projector"),
        (lambda: nfk.NFK.load(None), TypeError, "path"),
        (lambda: nfk.NFK.load(d / "x.nfk", model=5), TypeError, "model"),
        (lambda: nfk.load_dataset(7), TypeError, "source"),
        (lambda: nfk.set_num_threads(0), ValueError, "n must be"),
        (lambda: nfk.set_num_threads(2**40), ValueError, "n must be"),
        (lambda: nfk.set_num_threads(2**31 - 1), ValueError, "n must be"),  # OpenMP exit()ed
        (lambda: nfk.set_num_threads(1.5), TypeError, "n must be"),
        (lambda: nfk.set_tf32("yes"), TypeError, "allowed"),
    ]
    for call, error, match in cases:
        with pytest.raises(error, match=match) as e:
            call()
        one_line(e)
    assert nfk.get_num_threads() == 1


class Interacting(torch.nn.Module):
    """Logits that depend on the other examples of the batch: the layer tape's rows disagree with
    the per-example loop, so nfk warns (TORCH_WARN) that it falls back to the loop."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 3)

    def forward(self, x):
        h = self.fc(x.flatten(1))
        return h - 0.5 * h.mean(0, keepdim=True)


class Warns(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 3)

    def forward(self, x):
        warnings.warn("a warning from the model's own code")
        return self.fc(x.flatten(1))


class WarnsThenFails(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 3)

    def forward(self, x):
        if x.size(0) > 3:  # the load's 2-example probe passes, the Fisher pass fails
            warnings.warn("about to fail")
            raise RuntimeError("boom")
        return self.fc(x.flatten(1))


def test_warnings_of_a_failing_call(d, x):
    torch.jit.script(WarnsThenFails().eval()).save(str(d / "warns_then_fails.pt"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="boom") as e:
            nfk.fisher_diag(d / "warns_then_fails.pt", x, kind="classifier")
    one_line(e)
    assert [str(w.message) for w in caught] == ["about to fail"]
    # A filter that makes warnings errors does not replace the error in flight.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeError, match="boom"):
            nfk.fisher_diag(d / "warns_then_fails.pt", x, kind="classifier")


def test_libtorch_warnings_become_python_warnings(d, x, capfd):
    torch.manual_seed(0)
    torch.jit.script(Interacting().eval()).save(str(d / "interacting.pt"))
    torch.jit.script(Warns().eval()).save(str(d / "warns.pt"))
    capfd.readouterr()
    for model, text in [("interacting.pt", "take one backward pass per example"),
                        ("warns.pt", "a warning from the model's own code")]:
        with warnings.catch_warnings(record=True) as caught:
            # Python's default: once per location. nfk attributes each warning to the line that
            # called it, so one call warns once although the model ran in two binding calls.
            warnings.simplefilter("default")
            nfk.fisher_diag(d / model, x, kind="classifier")
        ours = [w for w in caught if text in str(w.message)]
        assert len(ours) == 1, [str(w.message) for w in caught]
        assert ours[0].category is UserWarning
        assert ours[0].filename == __file__  # attributed to the caller of nfk
        # Not printed by LibTorch's default handler (glog lines on stderr).
        assert text not in capfd.readouterr().err
    # A filter that makes warnings errors makes this one an error.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="fall back"):
            nfk.NFK("classifier", rank=2).fit(d / "interacting.pt", x)
    # PyTorch's own warnings still reach Python through PyTorch's handler afterwards.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.ones(3)[torch.tensor([1, 0, 1], dtype=torch.uint8)]
    assert any("uint8" in str(w.message) for w in caught)


# --- 5. misuse raises, never crashes ------------------------------------------------------------

def test_misuse_raises(d, x, fitted, ref):
    not_fitted = nfk.NFK("classifier")
    for call in [lambda: not_fitted.transform(x), lambda: not_fitted.spectrum(),
                 lambda: not_fitted.save(d / "p.nfk"),
                 lambda: nfk.fisher_distance(not_fitted, x, x)]:
        with pytest.raises(RuntimeError, match="not fitted"):
            call()
    broken = nfk.NFK("classifier")
    broken.projector_, broken._model = "garbage", None
    with pytest.raises(TypeError, match="projector_") as e:
        broken.transform(x)
    one_line(e)
    with pytest.raises(TypeError):
        nfk._nfk.Projector()
    # Wrong shapes for the model: one line, from the model's own error.
    for bad in [x[:, 0], x.reshape(N, 64), np.zeros((N, 3, 8, 8), np.float32),
                np.zeros((N, 1, 0, 8), np.float32)]:
        with pytest.raises((ValueError, RuntimeError)) as e:
            fitted.transform(bad)
        one_line(e)
    # Batches larger than the data.
    big_batch = 2**63 - 1
    assert np.array_equal(fitted.transform(x, batch_size=big_batch), ref)
    assert np.array_equal(nfk.fisher_diag(d / "cnn.pt", x, kind="classifier", batch_size=big_batch),
                          nfk.fisher_diag(d / "cnn.pt", x, kind="classifier"))
    assert nfk.fisher_distance(fitted, x, x[:5], batch_size=big_batch) == \
        nfk.fisher_distance(fitted, x, x[:5])
    # All-NaN data, empty sets.
    with pytest.raises(ValueError, match="4096 NaN") as e:
        nfk.NFK("classifier", rank=2).fit(d / "cnn.pt", np.full_like(x, np.nan))
    one_line(e)
    with pytest.raises(ValueError, match="holds no values") as e:
        nfk.fisher_distance(fitted, x[:0], x)
    one_line(e)
    # More generator samples than memory holds: a MemoryError, one line.
    with pytest.raises(MemoryError, match="can't allocate memory") as e:
        nfk.fisher_diag(d / "disc.pt", x, kind="gan", generator=d / "gen.pt", latent_dim=4,
                        estimator="true", reference_samples=2**40)
    one_line(e)
    # A projector used with another model.
    torch.manual_seed(0)
    torch.jit.script(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3)).eval()).save(
        str(d / "other.pt"))
    with pytest.raises(ValueError, match="differs from the one the projector was fitted with"):
        fitted.save(d / "fitted.nfk")
        nfk.NFK.load(d / "fitted.nfk", model=d / "other.pt")
    # Files that are not models or data.
    (d / "garbage.pt").write_bytes(b"\x00garbage" * 100)
    for call in [lambda: nfk.NFK("classifier").fit(d / "garbage.pt", x),
                 lambda: nfk.NFK("classifier").fit(d, x),
                 lambda: nfk.fisher_diag(d / "cnn.pt", d / "garbage.pt", kind="classifier"),
                 lambda: nfk.fisher_diag(d / "cnn.pt", "mnist:nope[:-1]", kind="classifier")]:
        with pytest.raises((ValueError, RuntimeError, OSError)) as e:
            call()
        one_line(e)
    # An nn.Module TorchScript cannot compile: one line, PyTorch's error as the cause.
    class Unscriptable(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(64, 3)

        def forward(self, x, **kwargs):
            return self.fc(x.flatten(1))

    with pytest.raises(ValueError, match="torch.jit.script cannot compile the Unscriptable") as e:
        nfk.NFK("classifier", rank=1).fit(Unscriptable(), x)
    one_line(e)
    assert e.value.__cause__ is not None
    # A model without parameters.
    torch.jit.script(torch.nn.Flatten().eval()).save(str(d / "flatten.pt"))
    with pytest.raises((ValueError, RuntimeError)) as e:
        nfk.NFK("classifier", rank=1).fit(d / "flatten.pt", x)
    one_line(e)

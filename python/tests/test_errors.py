"""Errors of the Python bindings: the CLI's one-line messages as Python exceptions, and every
option and argument checked before any work, with one line naming it (issue 11, defect 12).
"""
import numpy as np
import pytest

from sklearn.exceptions import NotFittedError

import nfk
from support import cli, cli_error, one_line


def test_missing_model_file(d):
    line = cli_error("fit", "--model", d / "nope.pt", "--kind", "classifier",
                     "--data", d / "x32.npy", "--out", d / "e.nfk")
    with pytest.raises(FileNotFoundError) as e:
        nfk.NFK(str(d / "nope.pt"), "classifier").fit(np.load(d / "x32.npy"))
    assert str(e.value) == line
    assert line.startswith("nfk: ") and "no such file" in line.lower()


def test_missing_data_file(d):
    line = cli_error("fit", "--model", d / "cnn.pt", "--kind", "classifier",
                     "--data", d / "nope.npy", "--out", d / "e.nfk")
    with pytest.raises(FileNotFoundError) as e:
        nfk.NFK(d / "cnn.pt", "classifier").fit(d / "nope.npy")
    assert str(e.value) == line


def test_bad_shape(d):
    line = cli_error("fit", "--model", d / "cnn.pt", "--kind", "classifier",
                     "--data", d / "bad_shape.npy", "--out", d / "e.nfk")
    with pytest.raises(ValueError) as e:
        nfk.NFK(str(d / "cnn.pt"), "classifier").fit(np.load(d / "bad_shape.npy"))
    assert str(e.value) == line
    # transform with a fitted projector: the same message as `nfk transform`.
    cli("fit", "--model", d / "cnn.pt", "--kind", "classifier", "--data", d / "x32.npy",
        "--rank", 2, "--out", d / "shape.nfk", "--quiet")
    line = cli_error("transform", "--projector", d / "shape.nfk", "--data", d / "bad_shape.npy",
                     "--out", d / "e.npy")
    with pytest.raises(ValueError) as e:  # checked against the fitted example shape
        nfk.NFK.load(d / "shape.nfk").transform(np.load(d / "bad_shape.npy"))
    assert str(e.value) == line
    assert "expects [N, 1, 8, 8]" in line


def test_bad_options(d):
    x = np.load(d / "x32.npy")
    # A rank beyond the data: the same line from the CLI and from Python (the library refuses it).
    line = cli_error("fit", "--model", d / "cnn.pt", "--kind", "classifier", "--data",
                     d / "x32.npy", "--rank", 1000, "--out", d / "e.nfk")
    with pytest.raises(ValueError) as e:
        nfk.NFK(d / "cnn.pt", "classifier", rank=1000).fit(x)
    assert str(e.value) == line
    # The CLI refuses --rank 0 while parsing, the Python layer before any work
    # (test_bad_options_one_line_before_any_work has every option).
    assert cli_error("fit", "--model", d / "cnn.pt", "--kind", "classifier", "--data",
                     d / "x32.npy", "--rank", 0, "--out", d / "e.nfk").startswith("nfk: --rank: ")
    with pytest.raises(ValueError, match=r"^nfk: rank must be in \[1, 2\*\*62 - 1\], got 0$"):
        nfk.NFK(d / "cnn.pt", "classifier", rank=0).fit(x)
    with pytest.raises(ValueError, match="kind"):
        nfk.NFK(d / "cnn.pt", "regressor").fit(x)
    with pytest.raises(ValueError, match="^nfk: .*gan.*"):
        nfk.NFK(d / "disc.pt", "gan").fit(x)  # no generator, estimator auto → true
    with pytest.raises(NotFittedError, match="not fitted"):
        nfk.NFK(d / "cnn.pt", "classifier").transform(x)


def test_bad_arrays(d):
    x = np.load(d / "x32.npy")
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError) as e:
        nfk.fisher_diag(d / "cnn.pt", x, kind="classifier")
    assert str(e.value) == "nfk: inputs: data holds 1 NaN and 0 Inf values (first at flat index 0)"
    with pytest.raises(TypeError, match="unsupported array dtype complex"):
        nfk.fisher_diag(d / "cnn.pt", x.astype(np.complex64), kind="classifier")
    with pytest.raises(ValueError, match="expected an array"):
        nfk.fisher_diag(d / "cnn.pt", np.float32(1), kind="classifier")


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
        nfk.NFK(d / "missing.pt", "classifier", **opts).fit(x)
    text = one_line(e)
    assert text.startswith(f"nfk: {name} must be "), text
    assert len(text) < 200, text


def test_bad_arguments_of_functions_one_line(d, x, fitted):
    cases = [
        (lambda: nfk.NFK(d / "cnn.pt", "regressor").fit(x), ValueError, "kind"),
        (lambda: nfk.NFK(d / "cnn.pt", None).fit(x), TypeError, "kind"),
        (lambda: nfk.NFK(None, "classifier").fit(x), TypeError, "a model is required"),
        (lambda: nfk.NFK(42, "classifier").fit(x), TypeError, "a model is a file path"),
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

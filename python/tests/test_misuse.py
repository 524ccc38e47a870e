"""Misuse of the Python bindings raises one line, never crashes (issue 11): unfitted or broken
estimators, wrong shapes, huge batches, NaN data, files that are not models or data.
"""
import numpy as np
import pytest
import torch

from sklearn.exceptions import NotFittedError

import nfk
from support import N, one_line


def test_misuse_raises(d, x, fitted, ref):
    not_fitted = nfk.NFK(d / "cnn.pt", "classifier")
    for call in [lambda: not_fitted.transform(x), lambda: not_fitted.spectrum(),
                 lambda: not_fitted.save(d / "p.nfk"),
                 lambda: nfk.fisher_distance(not_fitted, x, x)]:
        with pytest.raises(NotFittedError, match="^nfk: this NFK is not fitted"):
            call()
    broken = nfk.NFK(d / "cnn.pt", "classifier")
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
        nfk.NFK(d / "cnn.pt", "classifier", rank=2).fit(np.full_like(x, np.nan))
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
    for call in [lambda: nfk.NFK(d / "garbage.pt", "classifier").fit(x),
                 lambda: nfk.NFK(d, "classifier").fit(x),
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
        nfk.NFK(Unscriptable(), "classifier", rank=1).fit(x)
    one_line(e)
    assert e.value.__cause__ is not None
    # A model without parameters.
    torch.jit.script(torch.nn.Flatten().eval()).save(str(d / "flatten.pt"))
    with pytest.raises((ValueError, RuntimeError)) as e:
        nfk.NFK(d / "flatten.pt", "classifier", rank=1).fit(x)
    one_line(e)

"""Types follow the input (NumPy in -> NumPy out, torch in -> torch out on the input's device in
the model's dtype), iterables of batches (DataLoader, generators) for fit, transform and the
Fisher functions, and progress as tqdm bars (verbose)."""
import sys
import types

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import nfk
from support import N


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_in_torch_out(d, x, dtype):
    m = nfk.NFK(str(d / "cnn.pt"), "classifier", rank=3, seed=1, dtype=dtype, verbose=0)
    t = torch.from_numpy(x)
    e = m.fit_transform(t)
    assert isinstance(e, torch.Tensor) and e.dtype == getattr(torch, dtype)
    assert e.device == t.device and e.shape == (N, 3)
    out = m.transform(t[:5])
    assert isinstance(out, torch.Tensor) and out.dtype == getattr(torch, dtype)
    ref = m.transform(x[:5])  # NumPy in, NumPy out: the same numbers
    assert isinstance(ref, np.ndarray) and np.array_equal(out.numpy(), ref)
    s = nfk.fisher_stats(str(d / "cnn.pt"), t, kind="classifier", dtype=dtype, verbose=0)
    assert isinstance(s.fisher_diag, torch.Tensor) and s.fisher_diag.shape == (m.n_params_,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_tensor_in_cuda_tensor_out(d, x):
    m = nfk.NFK(str(d / "cnn.pt"), "classifier", rank=3, seed=1, device="cuda", verbose=0)
    e = m.fit(x).transform(torch.from_numpy(x).cuda())
    assert e.is_cuda and e.dtype == torch.float32


def test_dataloader_and_iterables_of_batches(d, x):
    """A DataLoader of (x, y), a generator of arrays and a list of tensors give the numbers of
    the whole array (fit reads the batches once; transform embeds batch by batch)."""
    t = torch.from_numpy(x)
    loader = DataLoader(TensorDataset(t, torch.zeros(N)), batch_size=16)
    whole = nfk.NFK(str(d / "cnn.pt"), "classifier", rank=3, seed=1, batch_size=16,
                    verbose=0).fit(x)
    m = nfk.NFK(str(d / "cnn.pt"), "classifier", rank=3, seed=1, batch_size=16,
                verbose=0).fit(loader)
    assert np.array_equal(m.singular_values_, whole.singular_values_)
    ref = whole.transform(x)
    e = m.transform(loader)
    assert isinstance(e, torch.Tensor) and e.shape == (N, 3)
    np.testing.assert_allclose(e.numpy(), ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    gen = (x[i:i + 16] for i in range(0, N, 16))
    e = m.transform(gen)
    assert isinstance(e, np.ndarray)
    np.testing.assert_allclose(e, ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    e = m.transform([t[:16], t[16:]])
    np.testing.assert_allclose(e.numpy(), ref, rtol=1e-5, atol=1e-6 * np.abs(ref).max())
    s = nfk.fisher_stats(str(d / "cnn.pt"), loader, kind="classifier", verbose=0)
    assert np.array_equal(s.fisher_diag.numpy(), nfk.fisher_diag(str(d / "cnn.pt"), x,
                                                                 kind="classifier", verbose=0))
    dist = nfk.fisher_distance(whole, iter([x[:32]]), [(t[32:], None)])
    assert dist == nfk.fisher_distance(whole, x[:32], x[32:])


def test_transform_streams_a_generator(x, fitted, monkeypatch):
    """transform pulls one batch, embeds it, then pulls the next (never holds them all)."""
    pulled, calls = [], []

    def batches():
        for i in range(0, N, 16):
            pulled.append(i)
            yield x[i:i + 16]

    real = nfk._nfk.transform

    def spy(p, model, xb, batch_size, progress=None):
        calls.append(len(pulled))
        return real(p, model, xb, batch_size, progress=progress)

    monkeypatch.setattr(nfk._nfk, "transform", spy)
    assert fitted.transform(batches()).shape == (N, 4)
    assert calls == [1, 2, 3, 4]


def test_bad_batches_one_line(d, x, fitted):
    with pytest.raises(ValueError, match="empty"):
        fitted.transform(iter([]))
    with pytest.raises(TypeError, match="batch 1 is float64, the first batch float32"):
        nfk.NFK(str(d / "cnn.pt"), rank=2, verbose=0).fit(iter([x[:8], x[8:].astype(float)]))
    with pytest.raises(TypeError, match="dict"):
        fitted.transform(iter([{"x": x}]))
    sparse = type("csr_matrix", (), {"__module__": "scipy.sparse._csr"})()
    with pytest.raises(TypeError, match="sparse input is not supported"):
        fitted.transform(sparse)


class _FakeTqdm:
    bars = []

    def __init__(self, total, desc, leave, delay):
        self.total, self.desc, self.n, self.closed = total, desc, 0, False
        _FakeTqdm.bars.append(self)

    def update(self, k):
        self.n += k

    def close(self):
        self.closed = True


@pytest.mark.parametrize("verbose", [1, 0])
def test_progress_bars_follow_verbose(d, x, monkeypatch, verbose):
    monkeypatch.setitem(sys.modules, "tqdm.auto", types.SimpleNamespace(tqdm=_FakeTqdm))
    _FakeTqdm.bars = []
    nfk.NFK(str(d / "cnn.pt"), rank=2, seed=1, batch_size=16, verbose=verbose).fit(x)
    if not verbose:
        assert _FakeTqdm.bars == []
        return
    assert _FakeTqdm.bars and all(b.closed for b in _FakeTqdm.bars)
    grads = [b for b in _FakeTqdm.bars if "gradients" in b.desc]
    assert grads and grads[0].total == N and grads[0].n == N


def test_without_tqdm_a_fit_is_silent(d, x, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # import fails: as if not installed
    m = nfk.NFK(str(d / "cnn.pt"), rank=2, seed=1, verbose=1).fit(x)
    assert m.singular_values_.shape == (2,)
    assert capsys.readouterr().err == ""

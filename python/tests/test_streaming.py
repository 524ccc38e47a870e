"""Iterables of batches are streamed, not held: a fit of a loader far larger than anything else
in the call keeps its inputs out of the process's memory (they are spooled to a temporary file
the library reads in place), gives the numbers of the whole array, and works for one-shot
generators and shuffled loaders alike."""
import os
import threading
import time

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import nfk

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/self/status"),
                                reason="reads the process's anonymous memory from /proc")


def rss_anon():
    """Bytes of the process's anonymous resident memory (not the file mappings)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no RssAnon in /proc/self/status")


class PeakAnon:
    """The largest anonymous resident memory seen while the block runs (sampled every 2 ms; the
    library releases the GIL, so the sampler runs during its work)."""

    def __enter__(self):
        self.before = self.peak = rss_anon()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_anon())
            time.sleep(0.002)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon())

    @property
    def growth(self):
        return self.peak - self.before


class Pooled(torch.nn.Module):
    """A small classifier of large inputs: [B, 1, 64, 64] -> 8x8 mean pool -> 4 logits (P = 260)."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 4)

    def forward(self, x):
        return self.fc(torch.nn.functional.avg_pool2d(x, 8).flatten(1))


def batches(n_batches, rows, seed):
    """A one-shot generator of float32 batches [rows, 1, 64, 64]: the data exist only batch by
    batch."""
    rng = np.random.default_rng(seed)
    for _ in range(n_batches):
        yield torch.from_numpy(rng.random((rows, 1, 64, 64), dtype=np.float32))


def test_a_fit_of_a_generator_holds_no_copy_of_its_inputs():
    torch.manual_seed(0)
    model = Pooled().eval()
    n_batches, rows = 40, 500
    data_bytes = n_batches * rows * 64 * 64 * 4  # 328 MB
    m = nfk.NFK(model, "classifier", rank=8, seed=0, verbose=0)
    m.fit(batches(2, 50, seed=9))  # warm-up: the first fit's one-time allocations (~45 MB)
    with PeakAnon() as peak:
        e = m.fit_transform(batches(n_batches, rows, seed=1)).numpy()
    assert e.shape == (n_batches * rows, 8) and np.isfinite(e).all()
    # Holding the inputs once (a concatenation, or the extension's copy) would add data_bytes;
    # what a fit does hold is V resident (20,000 x 260 float32: 21 MB).
    assert peak.growth < 0.25 * data_bytes, (peak.growth, data_bytes)
    # The same numbers as the whole array (which this test only now materialises).
    whole = torch.cat(list(batches(n_batches, rows, seed=1))).numpy()
    ref = nfk.NFK(model, "classifier", rank=8, seed=0, verbose=0).fit(whole)
    np.testing.assert_array_equal(m.singular_values_, ref.singular_values_)


def test_uint8_batches_are_scaled_as_the_library_scales_them(tmp_path):
    """Integer batches are converted while spooled: the same floats as an uint8 array given
    whole (which the library scales by 1/255)."""
    torch.manual_seed(0)
    model = Pooled().eval()
    x = np.random.default_rng(2).integers(0, 256, (96, 1, 64, 64), dtype=np.uint8)
    whole = nfk.NFK(model, "classifier", rank=4, seed=0, verbose=0).fit(x)
    loader = DataLoader(TensorDataset(torch.from_numpy(x)), batch_size=32)
    m = nfk.NFK(model, "classifier", rank=4, seed=0, verbose=0).fit(loader)
    np.testing.assert_array_equal(m.singular_values_, whole.singular_values_)
    mixed = [torch.from_numpy(x[:32]), torch.from_numpy(x[32:].astype(np.float32))]
    with pytest.raises(TypeError, match="batch 1 is float32, the first batch uint8"):
        nfk.NFK(model, "classifier", rank=4, verbose=0).fit(mixed)


def test_a_shuffled_loader_is_read_once(tmp_path):
    """A fit reads its batches exactly once, so a shuffled loader's order is the one every pass
    and the training embedding's rows follow: e(X) for the examples in that order."""
    torch.manual_seed(0)
    model = Pooled().eval()
    x = torch.from_numpy(np.random.default_rng(3).random((64, 1, 64, 64), dtype=np.float32))
    seen = []

    class Recording(torch.utils.data.Dataset):
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            seen.append(i)
            return x[i]

    loader = DataLoader(Recording(), batch_size=16, shuffle=True,
                        generator=torch.Generator().manual_seed(5))
    m = nfk.NFK(model, "classifier", rank=4, seed=0, verbose=0)
    e = m.fit_transform(loader)
    assert sorted(seen) == list(range(64))  # every example once
    np.testing.assert_allclose(e.numpy(), m.transform(x[seen]).numpy(), rtol=1e-4,
                               atol=1e-5 * np.abs(e.numpy()).max())


def test_the_classifier_fisher_of_a_generator_holds_no_copy():
    torch.manual_seed(0)
    model = Pooled().eval()
    n_batches, rows = 40, 500
    data_bytes = n_batches * rows * 64 * 64 * 4
    nfk.fisher(model, batches(2, 50, seed=9), verbose=0)  # warm-up (one-time allocations)
    with PeakAnon() as peak:
        f = nfk.fisher(model, batches(n_batches, rows, seed=4), verbose=0).numpy()
    assert peak.growth < 0.25 * data_bytes, (peak.growth, data_bytes)
    assert f.shape == (260,) and np.isfinite(f).all() and (f > 0).all()

"""Data in and results out: arrays, torch tensors, and iterables of batches (DataLoader).

Types follow the input: NumPy (or a data source string) in -> NumPy out; a torch tensor in ->
a torch tensor out on the input's device (the values in the model's dtype); an iterable of
batches -> the kind of its first batch.
"""
import numbers
import os
import sys
import tempfile

import numpy as np

from .data import _as_array


class _Like:
    """What a result should look like: NumPy, or torch on a device."""

    def __init__(self, torch_device=None):
        self.torch_device = torch_device

    def out(self, array):
        """`array` (NumPy) as the input's kind: NumPy, or a tensor on the input's device."""
        if self.torch_device is None:
            return array
        import torch

        return torch.from_numpy(np.ascontiguousarray(array)).to(self.torch_device)


def _torch():
    return sys.modules.get("torch")


def _is_tensor(x):
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def is_batches(X):
    """True for an iterable of batches: a DataLoader, an iterator or generator, any other
    iterable that is not array-like, or a list/tuple of tensors or of (x, y, ...) tuples."""
    if isinstance(X, (str, bytes, os.PathLike, np.ndarray, numbers.Number)) or _is_tensor(X):
        return False
    if hasattr(X, "__array__") or hasattr(X, "__array_interface__"):
        return False
    if isinstance(X, (list, tuple)):
        return len(X) > 0 and all(_is_tensor(b) or (isinstance(b, (list, tuple)) and b and
                                                    (_is_tensor(b[0]) or
                                                     isinstance(b[0], np.ndarray)))
                                  for b in X)
    torch = _torch()
    if torch is not None and isinstance(X, torch.utils.data.DataLoader):
        return True
    return hasattr(X, "__iter__") and not hasattr(X, "__getitem__")


def batch_inputs(batch):
    """The inputs of one batch: the batch itself, or the first element of (x, y, ...)."""
    if isinstance(batch, (list, tuple)):
        if not batch:
            raise ValueError("nfk: X: an empty batch (a tuple or list with no inputs)")
        return batch[0]
    if isinstance(batch, dict):
        raise TypeError("nfk: X: a batch is a tensor, an array or an (x, y, ...) tuple; got a "
                        "dict (map it to tensors first)")
    return batch


def like(X):
    """The _Like of an input (for an iterable: decided by its first batch, see iter_batches)."""
    if _is_tensor(X):
        return _Like(X.device)
    return _Like()


def iter_batches(X, name="X"):
    """(array, _Like) for each batch of an iterable of batches, converted as _as_array does."""
    for i, batch in enumerate(X):
        x = batch_inputs(batch)
        try:
            arr, _ = _as_array(x, f"{name} batch {i}")
        except (TypeError, ValueError) as e:
            raise type(e)(str(e)) from None
        yield arr, like(x)


def as_inputs(X, name="X"):
    """(array, data source string, _Like) for the whole of X. An iterable of batches is read once
    into a temporary file that is mapped back (see _spool): every pass of a fit needs all the
    data, and the process never holds it."""
    if type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(f"nfk: {name}: sparse input is not supported (a network takes dense "
                        "inputs: X.toarray())")
    if not is_batches(X):
        arr, source = _as_array(X, name)
        _check_not_empty(arr, name)
        return arr, source, like(X)
    return _spool(X, name)


def _as_library_floats(arr):
    """`arr` (a converted batch) as the floats the library makes of it: uint8 / 255 and other
    integers as float32 (the same correctly rounded operations as nfk::array_to_inputs)."""
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / np.float32(255)
    if arr.dtype.kind in "iu":
        return arr.astype(np.float32)
    return arr


def _spool(X, name):
    """(array, "", _Like) of an iterable of batches, streamed into an unnamed temporary file in
    tempfile.gettempdir() (TMPDIR) as the library's floats and mapped back copy-on-write
    (np.memmap mode "c"). The extension reads such an array in place, so the data live in the
    page cache, not in the process, however many passes a fit makes over them; the file is
    gone once the array is."""
    first = shape = dtype = None
    n = 0
    with tempfile.TemporaryFile(prefix="nfk-batches-") as f:
        for i, (arr, kind) in enumerate(iter_batches(X, name)):
            if first is None:
                first, shape, dtype = kind, arr.shape[1:], arr.dtype
            elif arr.shape[1:] != shape:
                raise ValueError(f"nfk: {name}: batch {i} has examples of shape {arr.shape[1:]}, "
                                 f"the first batch {shape}")
            elif arr.dtype != dtype:  # uint8 is scaled, floats are not
                raise TypeError(f"nfk: {name}: batch {i} is {arr.dtype}, the first batch {dtype}")
            floats = np.ascontiguousarray(_as_library_floats(arr))
            try:
                f.write(memoryview(floats).cast("B"))
            except OSError as e:
                raise OSError(f"nfk: {name}: could not write the batches to a temporary file in "
                              f"{tempfile.gettempdir()}: {e.strerror} (set TMPDIR to a folder "
                              "with room)") from None
            n += arr.shape[0]
        if first is None:
            raise ValueError(f"nfk: {name}: the iterable of batches is empty")
        # (a view of one byte with the data's shape: the checks without the data)
        _check_not_empty(np.broadcast_to(np.empty((), np.uint8), (n,) + shape), name)
        f.flush()
        # mmap keeps its own handle on the file: closing f here leaves the mapping valid.
        mapped = np.memmap(f, dtype=_as_library_floats(np.empty(0, dtype)).dtype, mode="c",
                           shape=(n,) + shape)
    return mapped, "", first


def _check_not_empty(arr, name):
    """scikit-learn's messages for arrays without samples or features (as check_array words them)."""
    shape = tuple(int(s) for s in arr.shape)
    if arr.ndim >= 1 and shape[0] == 0:
        raise ValueError(f"nfk: {name}: the array holds no values: 0 sample(s) (shape={shape}) "
                         "while a minimum of 1 is required")
    if arr.ndim >= 2 and n_features(arr) == 0:
        raise ValueError(f"nfk: {name}: the array holds no values: 0 feature(s) (shape={shape}) "
                         "while a minimum of 1 is required.")


def n_features(arr):
    """scikit-learn's n_features_in_: the number of values per example."""
    return int(np.prod(arr.shape[1:], dtype=np.int64)) if arr.ndim > 1 else 1

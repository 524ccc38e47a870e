"""Data in and results out: arrays, torch tensors, and iterables of batches (DataLoader).

Types follow the input: NumPy (or a data source string) in -> NumPy out; a torch tensor in ->
a torch tensor out on the input's device (the values in the model's dtype); an iterable of
batches -> the kind of its first batch.
"""
import numbers
import os
import sys

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
    and its batches concatenated (a fit needs all its data for every pass)."""
    if type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(f"nfk: {name}: sparse input is not supported (a network takes dense "
                        "inputs: X.toarray())")
    if not is_batches(X):
        arr, source = _as_array(X, name)
        _check_not_empty(arr, name)
        return arr, source, like(X)
    arrays, first = [], None
    for arr, kind in iter_batches(X, name):
        if first is None:
            first = kind
        elif arrays and arr.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(f"nfk: {name}: batch {len(arrays)} has examples of shape "
                             f"{arr.shape[1:]}, the first batch {arrays[0].shape[1:]}")
        elif arrays and arr.dtype != arrays[0].dtype:  # uint8 is scaled, floats are not
            raise TypeError(f"nfk: {name}: batch {len(arrays)} is {arr.dtype}, the first batch "
                            f"{arrays[0].dtype}")
        arrays.append(arr)
    if not arrays:
        raise ValueError(f"nfk: {name}: the iterable of batches is empty")
    return np.concatenate(arrays), "", first


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

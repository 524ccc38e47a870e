"""Data for the nfk package: data sources through the library, arrays and tensors converted to
what the extension reads."""
import os
import sys

import numpy as np

from . import _nfk
from ._validate import _check_path, _shown


def load_dataset(source):
    """Loads a data source as the CLI's ``--data`` does: ``(inputs, labels)`` as NumPy arrays.

    ``source`` is a named set (``"mnist:train"``, ``"fashion-mnist:test"``), an .npy or IDX
    file, optionally with ``[:n]`` to keep the first n examples. ``labels`` is None when the
    source has none. Example: ``x, y = nfk.load_dataset("mnist:test[:1000]")``.
    """
    return _nfk.load_dataset(_check_path("source", source))


# dtypes the extension reads as they are (native byte order); every other accepted dtype is
# converted here first, to what the library would make of it.
_EXTENSION_DTYPES = {np.dtype(t) for t in (np.float32, np.float64, np.uint8, np.int32, np.int64)}


def _tensor_to_numpy(t, name):
    """A torch tensor's values as a NumPy array (detached, on the CPU), or one clear error."""
    import torch  # only reached with a torch tensor, so torch is already imported

    if t.is_quantized:
        raise TypeError(f"nfk: {name}: quantized tensors are not supported (dequantize() first)")
    if t.device.type == "meta":
        raise ValueError(f"nfk: {name}: a tensor on the meta device has no values")
    if t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"nfk: {name}: unsupported tensor dtype {t.dtype} (a real floating point "
                        "or integer dtype)")
    t = t.detach()
    if t.layout != torch.strided:  # sparse or MKL-DNN: the same values, dense
        t = t.to_dense()
    if t.dtype == torch.bfloat16:  # NumPy has no bfloat16; float32 holds it exactly
        t = t.float()
    return t.cpu().resolve_conj().resolve_neg().numpy()


def _as_array(x, name="X"):
    """(C-contiguous NumPy array the extension reads, data source string) for any accepted form
    of data: a path or source string, a torch tensor, a NumPy array or anything np.asarray takes.

    Every array either converts to one the extension reads with the same values, or raises one
    TypeError (unsupported dtype) / ValueError: big-endian data is byte-swapped, float16 and
    bfloat16 widen to float32, integers other than uint8/int32/int64 become float32 (as the
    library does with int32/int64), non-contiguous and negative-stride arrays are copied. bool,
    complex, object, string and structured arrays are refused.
    """
    if isinstance(x, (str, bytes, os.PathLike)):
        source = _check_path(name, x)
        return _nfk.load_dataset(source)[0], source
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        x = _tensor_to_numpy(x, name)
    elif not isinstance(x, np.ndarray):
        try:
            x = np.asarray(x)
        except (ValueError, TypeError) as e:
            raise ValueError(f"nfk: {name}: not an array: {e}") from None
        if x.dtype == object:
            raise TypeError(f"nfk: {name} must be an array, a torch tensor or a data source "
                            f"string, got {_shown(x.item() if x.ndim == 0 else x)}")
    if isinstance(x, np.ma.MaskedArray) and np.ma.is_masked(x):
        raise ValueError(f"nfk: {name}: a masked array with masked entries (their values are not "
                         "data; fill them first, e.g. x.filled(0))")
    if x.ndim == 0:  # (np.ascontiguousarray would make it [1])
        raise ValueError(f"nfk: {name}: expected an array [N, ...], got a scalar")
    dt = x.dtype
    if dt.fields is not None or dt.kind not in "fiu":
        what = {"b": "bool", "c": "complex", "O": "object"}.get(dt.kind, str(dt))
        raise TypeError(f"nfk: {name}: unsupported array dtype {what} (a real floating point or "
                        "integer dtype; convert first, e.g. x.astype(np.float32))")
    if dt.kind == "f" and dt.itemsize not in (2, 4, 8):
        raise TypeError(f"nfk: {name}: unsupported array dtype {dt} (float16, float32 or float64)")
    native = dt.newbyteorder("=")
    if dt.kind == "f" and dt.itemsize == 2:
        native = np.dtype(np.float32)
    elif native not in _EXTENSION_DTYPES:
        native = np.dtype(np.float32)  # other integers: as the library converts int32/int64
    # astype converts values (byte order included), never reinterprets bytes.
    return np.ascontiguousarray(x.astype(native, copy=False)), ""

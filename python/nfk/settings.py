"""Process-wide LibTorch settings shared with PyTorch: TF32 and the intra-op thread count."""
import os

import numpy as np

from . import _nfk
from ._validate import _check_int, _shown


def set_tf32(allowed):
    """Allows (True) or forbids (False) TF32 tensor-core math for float32 matrix products and
    convolutions on CUDA, as ``nfk --tf32`` does. The switch is LibTorch's global one, shared with
    PyTorch in the same process (``torch.backends.cuda.matmul.allow_tf32`` and
    ``torch.backends.cudnn.allow_tf32``); PyTorch's default allows it for convolutions, the CLI's
    default forbids it. No effect on CPU or in float64."""
    if not isinstance(allowed, (bool, np.bool_)):
        raise TypeError(f"nfk: allowed must be True or False, got {_shown(allowed)}")
    _nfk.set_tf32(bool(allowed))


def tf32_allowed():
    """True when both matrix products and convolutions may use TF32 (see ``set_tf32``)."""
    return _nfk.tf32_allowed()


def get_num_threads():
    """LibTorch's intra-op thread count (shared with PyTorch in the same process)."""
    return _nfk.get_num_threads()


def set_num_threads(n):
    """Sets LibTorch's intra-op thread count. float32 results are bit-identical to the CLI's
    only with the same count: the CLI uses OMP_NUM_THREADS or every core, while a process that
    imported PyTorch may run at fewer (see ``torch.get_num_threads()``). At most
    max(1024, 4 x cores): OpenMP ends the process when it cannot make the threads."""
    _nfk.set_num_threads(_check_int("n", n, 1, max(1024, 4 * (os.cpu_count() or 1))))

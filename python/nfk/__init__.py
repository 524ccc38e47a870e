"""nfk: Neural Fisher Kernel embeddings of data through a trained network.

Python front end of the nfk C++ library (the same library calls, with the same defaults, as the
``nfk`` command line, so the same arguments and seed give the same numbers, bit for bit)::

    import nfk
    m = nfk.NFK(model="classifier.zoo", kind="classifier", rank=32, seed=0).fit(x_train)
    m.singular_values_            # sigma [k]
    e = m.transform(x_test)       # e(x) = P^T V_x  [N, k]
    m.spectrum_                   # the dict of `nfk spectrum --json`
    i = nfk.fisher_diag("classifier.zoo", x_train, kind="classifier")       # I [P] (NFK score)
    f = nfk.fisher("classifier.zoo", x_train, estimator="true")              # F_jj of p(y|x)
    d = nfk.fisher_distance(m, x_a, x_b)                                     # (fisher, embedding)

``nfk.NFK`` is a scikit-learn transformer (clone, Pipeline, GridSearchCV, pickle); see
``help(nfk.NFK)`` for the definitions (the score per kind, z, I and its floor, e(x)).

Data ``X`` may be a NumPy array, a torch tensor, a data source string as the CLI takes it
(``"mnist:test[:1000]"``, ``"x.npy"``) or an iterable of batches (a DataLoader; tensors or
(x, y) tuples), read once and streamed: ``transform`` embeds batch by batch; ``fit`` and the
Fisher functions spool the batches to an unnamed temporary file (TMPDIR) that the library reads
in place, so the inputs never sit in the process's memory. Arrays are read as ``nfk`` reads an
.npy file: uint8 is scaled to [0, 1] float32, other integers become float32, and floats are cast
to the model dtype. Results follow the input:
NumPy in, NumPy out; torch in, torch out on the input's device. Models are TorchScript or nfk
zoo files given by path, or an in-memory ``torch.jit.ScriptModule`` (an ``nn.Module`` is
scripted first).

Errors raise ``FileNotFoundError`` (a missing file), ``ValueError`` (a rejected input, option or
model), ``TypeError`` (an argument of the wrong type, an array of an unsupported dtype),
``MemoryError`` (an allocation LibTorch could not make) or
``RuntimeError``, with the one-line message the CLI prints. Options are checked before any work.
LibTorch's warnings during a call come out as ``warnings.warn`` (UserWarning), progress as tqdm
bars (``verbose=0``: none), and Ctrl-C stops a long call (``KeyboardInterrupt``) between batches.
"""
# The package: estimator.py (NFK), score_fisher.py (fisher_stats, fisher_diag, fisher_distance),
# classifier_fisher.py (fisher: the classifier's Fisher of p(y|x), KFAC), data.py
# (load_dataset, arrays and tensors as the extension reads them), settings.py (threads, TF32),
# _validate.py (argument checks), _model_file.py (models as files), _io.py (inputs, outputs,
# batches), _state.py (pickling), _progress.py (tqdm), _nfk (the C++ extension).
import re as _re
import sys as _sys

from . import _nfk


def _check_torch():
    """The torch Python imports must be the LibTorch _nfk links (both live in this process)."""
    torch = _sys.modules.get("torch")
    if torch is None:
        return
    release = [_re.match(r"\d+\.\d+\.\d+", v or "") for v in (torch.__version__,
                                                              _nfk.libtorch_version)]
    if release[0] and release[1] and release[0].group(0) != release[1].group(0):
        raise ImportError(f"nfk: torch {torch.__version__} is imported, but nfk was built "
                          f"against LibTorch {_nfk.libtorch_version}: reinstall nfk with this "
                          "torch (pip install --no-build-isolation .)")


_check_torch()
from .data import load_dataset
from .estimator import NFK
from . import plot  # matplotlib is imported when a figure is drawn
from .distances import class_distances, fisher_vectors, pairwise_distances, per_example_gradients
from .classifier_fisher import (KFAC, FisherCapacity, fisher, fisher_capacity,
                                fisher_vector_product)
from .score_fisher import FisherStats, SetDistance, fisher_diag, fisher_distance, fisher_stats
from .settings import get_num_threads, set_num_threads, set_tf32, tf32_allowed

__version__ = _nfk.__version__
__all__ = ["NFK", "fisher", "fisher_capacity", "fisher_vector_product", "KFAC",
           "FisherCapacity", "fisher_diag", "fisher_stats", "fisher_distance", "load_dataset",
           "FisherStats", "SetDistance", "per_example_gradients", "fisher_vectors",
           "pairwise_distances", "class_distances",
           "get_num_threads", "set_num_threads", "set_tf32", "tf32_allowed"]

# The public names are nfk's own wherever they are defined (repr, help, pickle: nfk.NFK).
for _name in __all__:
    globals()[_name].__module__ = __name__
del _name

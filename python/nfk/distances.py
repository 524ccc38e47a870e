"""Per-example gradients, Fisher vectors and Fisher distances (SPEC section 1):

- ``per_example_gradients(model, X, kind)``: J [N, P], J_i = grad_theta s(x_i);
- ``fisher_vectors(m, X)``: V_x = I^{-1/2} (grad s(x) - z) [N, P] under a fitted NFK's z and I;
- ``pairwise_distances(m, A, B)``: d(a_i, b_j) = ||V_a_i - V_b_j|| [N_A, N_B];
- ``class_distances(m, X, y)``: D[a, b] = ||mean_{y=a} V - mean_{y=b} V|| [C, C].

J and V hold N x P numbers: for small sets (a batch, a handful of examples); the fit and the
set distances never form them.
"""
import numpy as np

from . import _nfk
from ._io import as_inputs
from ._model_file import _load_model
from ._progress import progress
from ._validate import _check_int, _model_options, _shown
from .estimator import NFK


def _fitted(m):
    if not isinstance(m, NFK):
        raise TypeError(f"nfk: expected a fitted nfk.NFK, got {_shown(m)}")
    m._check_fitted()
    return m


def _rows(score_model, x, batch_size):
    """J [N, P] of x, batch by batch (the example index fixes per-example noise, as in a fit)."""
    blocks = [_nfk.per_example_gradients(score_model, np.ascontiguousarray(x[i:i + batch_size]),
                                         i) for i in range(0, x.shape[0], batch_size)]
    return np.concatenate(blocks) if blocks else np.zeros((0, score_model.n_params))


def per_example_gradients(model, X, kind, *, generator=None, latent_dim=0, output=-1,
                          dtype="float32", device="cpu", batch_size=256, seed=0):
    """J [N, P]: the per-example gradients grad_theta s(x_i) of the score of ``kind`` (see
    ``help(nfk.NFK)``), parameters in the model's ``named_parameters()`` order, in its dtype.
    Tensors in, tensors out. Example: ``j = nfk.per_example_gradients(net, x[:8], "classifier")``.
    """
    mo = _model_options(kind, seed, dtype, device, latent_dim, output)
    batch_size = _check_int("batch_size", batch_size, 1)
    x, _, like = as_inputs(X)
    score_model, _files = _load_model(mo["kind"], model, generator, mo["latent_dim"],
                                      mo["output"], mo["seed"], mo["dtype"], mo["device"], x)
    return like.out(_rows(score_model, x, batch_size))


def fisher_vectors(m, X, batch_size=None):
    """V [N, P]: V_x = I^{-1/2} (grad s(x) - z) under the fitted NFK ``m``'s z and I (so that
    ``fisher_vectors(m, X) @ m.components_.T`` is ``m.transform(X)``)."""
    m = _fitted(m)
    batch_size = _check_int("batch_size", m.batch_size if batch_size is None else batch_size, 1)
    x, _, like = as_inputs(X)
    m._check_example_shape(x)
    j = _rows(m._model, x, batch_size)
    return like.out((j - m.mean_score_) / np.sqrt(m.fisher_diag_))


def pairwise_distances(m, A, B=None, batch_size=None):
    """d(a_i, b_j) = ||V_a_i - V_b_j|| [N_A, N_B] float64 (B defaults to A)."""
    m = _fitted(m)
    batch_size = _check_int("batch_size", m.batch_size if batch_size is None else batch_size, 1)
    a, _, like = as_inputs(A, "A")
    b = a if B is None else as_inputs(B, "B")[0]
    with progress(m.verbose, "distances") as bars:
        return like.out(_nfk.pairwise_distances(m.projector_, m._model, a, b, batch_size,
                                                progress=bars))


def class_distances(m, X, y, batch_size=None):
    """D[a, b] = ||mean_{y=a} V - mean_{y=b} V|| [C, C] float64, C = max(y) + 1 (an absent
    class gives NaN rows and columns); one pass over X."""
    m = _fitted(m)
    batch_size = _check_int("batch_size", m.batch_size if batch_size is None else batch_size, 1)
    x, _, like = as_inputs(X)
    labels = y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"nfk: y must hold integer class labels, got dtype {labels.dtype}")
    if labels.shape != (x.shape[0],):
        raise ValueError(f"nfk: y must be [N] = [{x.shape[0]}] labels, got shape {labels.shape}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"nfk: y: class labels must be >= 0, got {labels.min()}")
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    with progress(m.verbose, "class distances") as bars:
        return like.out(_nfk.class_distances(m.projector_, m._model, x, labels, batch_size,
                                             progress=bars))

"""The classifier's Fisher of p(y|x): ``nfk fisher --conditional`` (SPEC section 1b).

For logits f(x), p = softmax(f) and g_y = grad_theta log p(y|x), all uncentred (Kunstner et al.
2019):

* ``"true"``: F = (1/N) sum_x sum_y p(y|x) g_y g_y^T = (1/N) sum_x J_f^T (diag p - p p^T) J_f;
* ``"mc"``: y ~ p(y|x), ``mc_samples`` labels per example, seeded by ``seed``;
* ``"empirical"``: y = the data's label (needs ``y``): a different matrix;
* ``"batched"``: the squared mean gradient of each batch of ``batch_size`` examples, averaged
  over batches -- the common error in EWC code, **not** a Fisher estimate (for batches drawn
  with replacement its expectation is F_emp / B + (1 - 1/B) g g^T, g the mean gradient; over a
  random partition of N examples g g^T + (N - B) / (B (N - 1)) (F_emp - g g^T)); offered to show
  the difference.

Forms: ``"diag"`` (F_jj [P] in the model's parameter order), ``"kfac"`` (per Linear / Conv2d
layer, F ~ A (x) G: A the layer inputs' second moment with a bias column, G the output
gradients' under the estimator's labels) and ``"ekfac"`` (K-FAC's eigenbases with re-fitted
diagonal scalings, George et al. 2018), the last two as a :class:`KFAC` object.
"""
import collections

import numpy as np

from . import _nfk
from ._io import as_inputs
from ._model_file import _load_model
from ._progress import progress
from ._validate import (_check_choice, _check_int, _check_positive_float, _check_tol,
                        _model_options)

_ESTIMATORS = ("true", "mc", "empirical", "batched")
_FORMS = ("diag", "kfac", "ekfac")

FisherCapacity = collections.namedtuple(
    "FisherCapacity", ["trace", "top_eigenvalues", "effective_rank_entropy",
                       "effective_rank_ratio", "top_k_share", "sloppy_threshold",
                       "sloppy_fraction", "iterations", "estimated_error"])
FisherCapacity.__doc__ = """Capacity statistics of a classifier's Fisher: ``trace`` (exact, from
the diagonal), ``top_eigenvalues`` [k] (randomized SVD of the Fisher rows W, F = W^T W),
``effective_rank_entropy`` exp(-sum q log q) and ``effective_rank_ratio`` (sum l)^2 / sum l^2 of
the top k (q = l / sum l), ``top_k_share`` (sum of the top k / trace), and the ``sloppy_fraction``
of parameters whose F_jj is below ``sloppy_threshold`` (sloppy x the mean diagonal); the SVD's
``iterations`` and its ``estimated_error``, the estimated max relative error of the top-k
sqrt(eigenvalues) (None where not estimated)."""


def _labels(y, n, name="y"):
    if y is None:
        return None
    labels = y.detach().cpu().numpy() if hasattr(y, "detach") else np.asarray(y)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"nfk: {name} must hold integer class labels, got dtype {labels.dtype}")
    if labels.shape != (n,):
        raise ValueError(f"nfk: {name} must be [N] = [{n}] labels (one per input), got shape "
                         f"{labels.shape}")
    return np.ascontiguousarray(labels, dtype=np.int64)


class _Call:
    """The checked arguments of one classifier-Fisher call: the model, inputs and labels."""

    def __init__(self, model, X, y, estimator, mc_samples, dtype, device, batch_size, seed):
        self.estimator = _check_choice("estimator", estimator, _ESTIMATORS)
        self.mc_samples = _check_int("mc_samples", mc_samples, 1, 10**6)
        self.batch_size = _check_int("batch_size", batch_size, 1)
        mo = _model_options("classifier", seed, dtype, device, 0, -1)
        self.x, source, self.like = as_inputs(X)
        if y is None and self.estimator in ("empirical", "batched") and source:
            y = _nfk.load_dataset(source)[1]  # a named set's own labels
        self.y = _labels(y, self.x.shape[0])
        if self.y is None and self.estimator in ("empirical", "batched"):
            raise ValueError(f"nfk: the {self.estimator} Fisher needs labels: pass y")
        self.model, self._files = _load_model("classifier", model, None, 0, -1, mo["seed"],
                                              mo["dtype"], mo["device"], self.x)

    def args(self):
        return (self.model, self.x, self.y, self.estimator, self.mc_samples, self.batch_size)


class KFAC:
    """K-FAC / EK-FAC factors of a classifier's Fisher (from :func:`fisher` with form "kfac" or
    "ekfac"). ``mv(v)`` is F~ v, ``inverse_mv(v, damping)`` is (F~ + damping I)^-1 v (block by
    block through the factors' eigendecompositions; ``tikhonov=True``: K-FAC's factored damping
    (A + pi sqrt(d) I) (x) (G + sqrt(d)/pi I), Martens & Grosse 2015), for v [P] or [P, u];
    parameters outside Linear / Conv2d layers have zero curvature. ``layers`` lists each block's
    name, A, G (and EK-FAC's scalings)."""

    def __init__(self, factors, like):
        self._factors, self._like = factors, like
        self.form, self.n_params, self.n_examples = (factors.form, factors.num_params,
                                                     factors.n_examples)

    @property
    def layers(self):
        return [{k: (self._like.out(v) if isinstance(v, np.ndarray) else v) for k, v in d.items()}
                for d in self._factors.layers()]

    def _vector(self, v):
        arr = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
        if arr.ndim not in (1, 2) or arr.shape[0] != self.n_params:
            raise ValueError(f"nfk: v must be [P] or [P, u] with P = {self.n_params}, got shape "
                             f"{arr.shape}")
        return np.ascontiguousarray(arr, dtype=np.float64)

    def mv(self, v):
        return self._like.out(self._factors.mv(self._vector(v)))

    def inverse_mv(self, v, damping, tikhonov=False):
        damping = _check_positive_float("damping", damping)
        return self._like.out(self._factors.inverse_mv(self._vector(v), damping, bool(tikhonov)))


def fisher(model, X, y=None, *, estimator="true", form="diag", mc_samples=1, dtype="float32",
           device="cpu", batch_size=256, seed=0, verbose=1):
    """The classifier's Fisher of p(y|x) over X (``nfk fisher --conditional``).

    ``model``: a classifier (forward(x) -> logits [B, C]) as a path, TorchScript module or
    nn.Module; ``X`` the inputs (array, tensor, data source or iterable of batches); ``y`` the
    labels [N] (for "empirical" and "batched"; a named set's own by default). ``form="diag"``
    returns F_jj [P] (NumPy, or torch on X's device for tensors); "kfac" / "ekfac" a
    :class:`KFAC`. Example: ``f = nfk.fisher(net, x, estimator="mc", mc_samples=4, seed=1)``.
    """
    form = _check_choice("form", form, _FORMS)
    c = _Call(model, X, y, estimator, mc_samples, dtype, device, batch_size, seed)
    with progress(verbose, "fisher") as bars:
        if form == "diag":
            return c.like.out(_nfk.classifier_fisher_diag(*c.args(), progress=bars)["diag"])
        factors = _nfk.kfac_factors(*c.args()[:5], form, c.batch_size, progress=bars)
    return KFAC(factors, c.like)


def fisher_vector_product(model, X, v, y=None, *, estimator="true", mc_samples=1,
                          dtype="float32", device="cpu", batch_size=256, seed=0, verbose=1):
    """F v without forming F: per batch one forward-mode JVP of the logits, the output-space
    Fisher of the estimator, one VJP (the curvlinops approach); v [P] or [P, u]."""
    c = _Call(model, X, y, estimator, mc_samples, dtype, device, batch_size, seed)
    arr = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
    with progress(verbose, "F v") as bars:
        out = _nfk.fisher_vector_product(*c.args(), np.ascontiguousarray(arr, np.float64),
                                         progress=bars)
    return c.like.out(out)


def fisher_capacity(model, X, y=None, *, estimator="true", mc_samples=1, top_k=20,
                    sloppy=1e-3, power_iters=6, tol="auto", dtype="float32", device="cpu",
                    batch_size=256, seed=0, verbose=1):
    """Trace, top-k eigenvalues, effective ranks and the sloppy share of the classifier's
    Fisher (``nfk fisher --conditional --stats``): a :class:`FisherCapacity`. The eigenvalues
    come from a randomized SVD of at most ``power_iters`` iterations that stops once its
    estimated max relative error of the top-k sqrt(eigenvalues) is at most ``tol`` ("auto": 2e-4
    in float32, 1e-8 in float64; 0: every iteration)."""
    top_k = _check_int("top_k", top_k, 1, 4096)
    sloppy = _check_positive_float("sloppy", sloppy)
    power_iters = _check_int("power_iters", power_iters, 0, 1000)
    tol = _check_tol(tol)
    c = _Call(model, X, y, estimator, mc_samples, dtype, device, batch_size, seed)
    with progress(verbose, "fisher") as bars:
        diag = _nfk.classifier_fisher_diag(*c.args(), progress=bars)["diag"]
        d = _nfk.fisher_capacity(*c.args(), diag, top_k, sloppy, power_iters, tol,
                                 progress=bars)
    return FisherCapacity(d["trace"], c.like.out(d["top_eigenvalues"]),
                          d["effective_rank_entropy"], d["effective_rank_ratio"],
                          d["top_k_share"], d["sloppy_threshold"], d["sloppy_fraction"],
                          d["iterations"], d["estimated_error"])

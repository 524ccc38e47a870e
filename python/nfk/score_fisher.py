"""Fisher statistics and set distances: ``nfk fisher`` and ``nfk distance``."""
import collections
import os

from . import _nfk
from ._model_file import _load_model
from ._io import as_inputs
from ._progress import progress
from ._validate import _check_int, _fisher_options, _model_options, _shown
from .estimator import NFK


SetDistance = collections.namedtuple("SetDistance", ["fisher", "embedding"])
FisherStats = collections.namedtuple(
    "FisherStats", ["fisher_diag", "mean_score", "estimator", "reference", "n_reference",
                    "floor_value", "n_floored"])
FisherStats.__doc__ = """The Fisher statistics of a model over a reference set (``nfk fisher``):
``fisher_diag`` I = E_ref[(grad s - z)^2] [P] (1/N variance, floored), ``mean_score`` z [P],
``estimator`` (resolved: "true", "empirical" or "none" for ntk), ``reference`` (what the samples
were: "data", "generator samples", "model samples"), ``n_reference``, ``floor_value`` (the
absolute floor: fisher_floor x mean I) and ``n_floored`` (parameters raised to it: those no
example moves, e.g. dead units; their Fisher-vector coordinates are 0)."""

SetDistance.__doc__ = """Distance between two sets (AFV): ``fisher`` = ||mean_A V - mean_B V||
over all P Fisher-vector coordinates, ``embedding`` = ||mean_A e - mean_B e|| in the rank-k NFK
embedding."""


def fisher_stats(model, X, kind, *, estimator="auto", generator=None, latent_dim=0, output=-1,
                 reference_samples=0, fisher_floor=1e-8, dtype="float32", device="cpu",
                 batch_size=256, seed=0, verbose=1):
    """The Fisher statistics z and I with their provenance (``nfk fisher``): a FisherStats.

    ``model`` is a path, TorchScript module or nn.Module of kind ``kind``; X the data (array,
    tensor, data source or iterable of batches, read once; the reference for
    ``estimator="empirical"``). Arrays come back NumPy, or torch (on X's device) for tensors.
    Example: ``s = nfk.fisher_stats("cnn.pt", x, kind="classifier"); s.n_floored``.
    """
    mo = _model_options(kind, seed, dtype, device, latent_dim, output)
    fo = _fisher_options(estimator, reference_samples, fisher_floor, batch_size)
    x, _, like = as_inputs(X)
    score_model, _files = _load_model(mo["kind"], model, generator, mo["latent_dim"],
                                      mo["output"], mo["seed"], mo["dtype"], mo["device"], x)
    with progress(verbose, "fisher") as bars:
        s = _nfk.fisher_stats(score_model, x, progress=bars, **fo)
    return FisherStats(like.out(s["fisher_diag"]), like.out(s["mean_score"]), s["estimator"],
                       s["reference"], s["n_reference"], s["floor_value"], s["n_floored"])


def fisher_diag(model, X, kind, *, return_mean=False, **options):
    """Diagonal Fisher information I = E_ref[(grad s - z)^2] [P] (``nfk fisher``).

    The arguments of :func:`fisher_stats`. With ``return_mean=True`` returns ``(I, z)``.
    Example: ``i = nfk.fisher_diag("cnn.pt", x, kind="classifier")``.
    """
    stats = fisher_stats(model, X, kind, **options)
    if return_mean:
        return stats.fisher_diag, stats.mean_score
    return stats.fisher_diag


def fisher_distance(projector, A, B, *, batch_size=256):
    """Fisher distance between the sets A and B under a fitted projector (``nfk distance``).

    ``projector`` is a fitted :class:`NFK` or a projector file path. Returns
    ``SetDistance(fisher=||mean_A V - mean_B V||, embedding=||mean_A e - mean_B e||)``.
    Example: ``nfk.fisher_distance(m, x_sevens, x_ones).fisher``.
    """
    batch_size = _check_int("batch_size", batch_size, 1)
    if not isinstance(projector, NFK):
        if not isinstance(projector, (str, bytes, os.PathLike)):
            raise TypeError("nfk: projector must be a fitted nfk.NFK or a projector file path, "
                            f"got {_shown(projector)}")
        projector = NFK.load(projector)
    projector._check_fitted()
    a, _, _ = as_inputs(A, "A")
    b, _, _ = as_inputs(B, "B")
    return SetDistance(*_nfk.set_distance(projector.projector_, projector._model, a, b,
                                          batch_size))

"""Fisher statistics and set distances: ``nfk fisher`` and ``nfk distance``."""
import collections
import os

from . import _nfk
from ._model_file import _load_model
from ._validate import _check_int, _fisher_options, _model_options, _shown
from .data import _as_array
from .estimator import NFK


SetDistance = collections.namedtuple("SetDistance", ["fisher", "embedding"])
SetDistance.__doc__ = """Distance between two sets (AFV): ``fisher`` = ||mean_A V - mean_B V||
over all P Fisher-vector coordinates, ``embedding`` = ||mean_A e - mean_B e|| in the rank-k NFK
embedding."""


def fisher_diag(model, X, kind, *, estimator="auto", generator=None, latent_dim=0, output=-1,
                reference_samples=0, fisher_floor=1e-8, dtype="float32", device="cpu",
                batch_size=256, seed=0, return_mean=False):
    """Diagonal Fisher information I = E_ref[(grad s - z)^2] [P] (``nfk fisher``).

    ``model`` is a path or TorchScript module of kind ``kind``; X is the data (the reference
    for ``estimator="empirical"``). With ``return_mean=True`` returns ``(I, z)``.
    Example: ``i = nfk.fisher_diag("cnn.pt", x, kind="classifier")``.
    """
    mo = _model_options(kind, seed, dtype, device, latent_dim, output)
    fo = _fisher_options(estimator, reference_samples, fisher_floor, batch_size)
    x, _ = _as_array(X)
    score_model, _files = _load_model(mo["kind"], model, generator, mo["latent_dim"],
                                      mo["output"], mo["seed"], mo["dtype"], mo["device"], x)
    stats = _nfk.fisher_stats(score_model, x, **fo)
    if return_mean:
        return stats["fisher_diag"], stats["mean_score"]
    return stats["fisher_diag"]


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
    a, _ = _as_array(A, "A")
    b, _ = _as_array(B, "B")
    return SetDistance(*_nfk.set_distance(projector.projector_, projector._model, a, b,
                                          batch_size))

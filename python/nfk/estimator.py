"""nfk.NFK: the scikit-learn style estimator (``nfk fit`` / ``transform`` / ``spectrum``)."""
import json

from . import _nfk
from ._model_file import _load_model
from ._validate import (_INT64_MAX, _METHODS, _check_choice, _check_int, _check_path,
                        _fisher_options, _model_options, _shown)
from .data import _as_array


class NFK:
    """Low-rank Neural Fisher Kernel embedding, scikit-learn style (``nfk fit`` / ``transform``).

    Fits the truncated SVD V ~ Phi diag(sigma) P^T of the Fisher vectors
    V_x = I^{-1/2} (grad_theta s(x) - z) of a data set and embeds any input as e(x) = P^T V_x.

    Parameters (the ``nfk fit`` flags, with the same defaults):
        kind: ``"classifier"``, ``"gan"``, ``"vae"``, ``"density"``, ``"score"`` or ``"ntk"``.
        rank: k, the number of NFK components (32).
        estimator: reference for z and I: ``"auto"``, ``"true"`` (model samples) or
            ``"empirical"`` (the data).
        method: ``"auto"``, ``"exact"``, ``"per-example"``, ``"matrix-free"`` or ``"sketch"``
            (single pass over V after the Fisher statistics).
        oversample, power_iters: randomized SVD probes beyond k (10) and iterations (10).
        dtype: ``"float32"`` or ``"float64"``; device: ``"cpu"`` or ``"cuda"``.
        batch_size (256), seed (0), reference_samples (0: as many as the data),
        fisher_floor (1e-8, relative to mean I), memory_budget_mib (4096).
        generator, latent_dim: ``gan`` only: the generator (path or module) and its latent size.
        output: ``ntk`` only: the output column for [B, C] outputs.

    Attributes after ``fit``: ``singular_values_`` [k], ``components_`` (P^T) [k, P],
    ``explained_variance_ratio_`` [k], ``mean_score_`` (z) [P], ``fisher_diag_`` (I) [P],
    ``method_`` (the resolved method), ``n_params_``, ``n_examples_``, ``projector_``.

    Example::

        m = nfk.NFK(kind="classifier", rank=16, seed=0)
        e_train = m.fit_transform("lenet.pt", x_train)    # Phi diag(sigma)  [N, 16]
        e_test = m.transform(x_test)                       # P^T V_x         [M, 16]
        m.save("lenet.nfk")                                # `nfk transform --projector lenet.nfk`
    """

    def __init__(self, kind, rank=32, *, estimator="auto", method="auto", oversample=10,
                 power_iters=10, dtype="float32", device="cpu", batch_size=256, seed=0,
                 reference_samples=0, fisher_floor=1e-8, memory_budget_mib=4096,
                 generator=None, latent_dim=0, output=-1):
        self.kind = kind
        self.rank = rank
        self.estimator = estimator
        self.method = method
        self.oversample = oversample
        self.power_iters = power_iters
        self.dtype = dtype
        self.device = device
        self.batch_size = batch_size
        self.seed = seed
        self.reference_samples = reference_samples
        self.fisher_floor = fisher_floor
        self.memory_budget_mib = memory_budget_mib
        self.generator = generator
        self.latent_dim = latent_dim
        self.output = output
        self.projector_ = None
        self._model = None
        self._files = ()
        self._train_embedding = None

    def fit(self, model, X):
        """Fits the projector on X [N, ...] through ``model`` (path or TorchScript module).

        The same computation as ``nfk fit --model M --kind KIND --data X ...`` with this
        object's options. Returns self.
        """
        mo = _model_options(self.kind, self.seed, self.dtype, self.device, self.latent_dim,
                            self.output)
        fo = _fisher_options(self.estimator, self.reference_samples, self.fisher_floor,
                             self.batch_size)
        # The SVD forms rank + oversample and 2 power_iters + 2: bounds that keep both in int64.
        rank = _check_int("rank", self.rank, 1, _INT64_MAX >> 1)
        method = _check_choice("method", self.method, _METHODS)
        oversample = _check_int("oversample", self.oversample, 0, _INT64_MAX >> 1)
        power_iters = _check_int("power_iters", self.power_iters, 0, _INT64_MAX >> 2)
        memory_budget_mib = _check_int("memory_budget_mib", self.memory_budget_mib, 0,
                                       _INT64_MAX >> 20)
        x, source = _as_array(X)
        score_model, files = _load_model(mo["kind"], model, self.generator, mo["latent_dim"],
                                         mo["output"], mo["seed"], mo["dtype"], mo["device"], x)
        projector, embedding = _nfk.fit(
            score_model, x, rank=rank, oversample=oversample, power_iters=power_iters,
            method=method, memory_budget_mib=memory_budget_mib, data_source=source, **fo)
        self.projector_, self._model, self._files = projector, score_model, files
        self._train_embedding = embedding
        return self

    def fit_transform(self, model, X):
        """Fits on X and returns its embedding Phi diag(sigma) [N, k] (``nfk fit
        --embedding-out``), which equals ``transform(X)`` up to rounding."""
        return self.fit(model, X)._train_embedding

    def transform(self, X, batch_size=None):
        """e(x) = P^T V_x for every row of X [N, ...] -> [N, k] (``nfk transform``)."""
        self._check_fitted()
        batch_size = _check_int("batch_size", self.batch_size if batch_size is None else batch_size,
                                1)
        x, _ = _as_array(X)
        return _nfk.transform(self.projector_, self._model, x, batch_size)

    def spectrum(self):
        """The NFK spectrum as ``nfk spectrum --json`` prints it: a dict with
        ``singular_values``, ``eigenvalues``, ``explained_variance_ratio``, ``rank``,
        ``method``, ``dtype``, ``n_examples``, ``n_params``, ..."""
        self._check_fitted()
        return json.loads(self.projector_.spectrum_json())

    def profile(self):
        """Where the last fit's time went, as ``nfk fit --json`` prints it under "profile": a
        dict of seconds per stage (``statistics_s``, ``gradients_s``, ``products_s``,
        ``factorizations_s``, ``total_s``; the device synchronised at each boundary), the number
        of ``products``, their GEMM ``product_flops`` (V resident) and ``peak_device_bytes``
        (CUDA; None on the CPU), plus ``method_note``: the method chosen and why."""
        self._check_fitted()
        out = json.loads(self.projector_.profile_json())
        out["method_note"] = self.projector_.method_note
        return out

    def save(self, path):
        """Writes the projector file (as ``nfk fit --out``), usable by the CLI.

        It names the model by its path: fit with a model file (not an in-memory module) for a
        projector that stays usable after this object is gone."""
        self._check_fitted()
        self.projector_.save(_check_path("path", path))
        return self

    @classmethod
    def load(cls, path, model=None):
        """An NFK from a projector file (``nfk fit --out``), with its model reloaded from the
        stored path, or from ``model`` (a path) if the file moved (its hash must match)."""
        path = _check_path("path", path)
        model = "" if model is None else _check_path("model", model)
        projector = _nfk.load_projector(path)
        self = cls(projector.kind, projector.rank, method=projector.method,
                   dtype=projector.dtype, batch_size=projector.batch_size, seed=projector.seed)
        self.projector_ = projector
        self._model = _nfk.load_projector_model(projector, model)
        return self

    def _check_fitted(self):
        if self.projector_ is None:
            raise RuntimeError("nfk: this NFK is not fitted yet: call fit(model, X) first")
        if not (isinstance(self.projector_, _nfk.Projector)
                and isinstance(self._model, _nfk.ScoreModel)):
            raise TypeError("nfk: this NFK's projector_ is not one that fit() or load() made, "
                            f"got {_shown(self.projector_)}")

    singular_values_ = property(lambda self: self.projector_.singular_values,
                                doc="sigma [k], descending.")
    components_ = property(lambda self: self.projector_.basis.T,
                           doc="P^T [k, P]: the right singular vectors, one per row.")
    explained_variance_ratio_ = property(
        lambda self: self.projector_.explained_variance_ratio,
        doc="sigma^2 / ||V||_F^2 [k] (float64).")
    mean_score_ = property(lambda self: self.projector_.mean_score, doc="z [P].")
    fisher_diag_ = property(lambda self: self.projector_.fisher_diag, doc="I [P], floored.")
    method_ = property(lambda self: self.projector_.method, doc="The resolved fit method.")
    n_params_ = property(lambda self: self.projector_.n_params, doc="P.")
    n_examples_ = property(lambda self: self.projector_.n_examples, doc="N.")

    def __repr__(self):
        fitted = "" if self.projector_ is None else f", fitted on {self.n_examples_} examples"
        return f"NFK(kind={self.kind!r}, rank={self.rank}, method={self.method!r}{fitted})"

"""nfk.NFK: the Neural Fisher Kernel as a scikit-learn transformer (``nfk fit`` / ``transform``)."""
import json

from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from . import _nfk, _state
from ._io import as_inputs, is_batches, iter_batches, n_features
from ._model_file import _load_model
from ._progress import progress
from ._validate import (_ESTIMATORS, _INT64_MAX, _METHODS, _SOLVERS, _check_choice, _check_int,
                        _check_path, _check_tol, _fisher_options, _model_options, _shown)

_NOT_FITTED = "nfk: this NFK is not fitted yet: call fit(X) first (or NFK.load a projector)"


class NFK(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Low-rank Neural Fisher Kernel embedding: a scikit-learn transformer.

    For a trained network with parameters theta (P of them) and a per-example score s(x), the
    Fisher score is U_x = grad_theta s(x) - z, the Fisher vector V_x = I^{-1/2} U_x, and the
    NFK is K(x, x') = <V_x, V_x'>. ``fit`` computes the truncated SVD V ~ Phi diag(sigma) P^T of
    the training set's Fisher vectors; ``transform`` embeds any x as e(x) = P^T V_x [k], so that
    e(x) . e(x') approximates K(x, x') on the top-k subspace (for training points
    e(X) = Phi diag(sigma): sigma is not normalised by N; the Gram eigenvalues are sigma^2).

    The score s(x) by ``kind``: ``"classifier"``: logsumexp_y f_y(x) (the JEM free energy, so
    grad s = sum_y p(y|x) grad f_y); ``"gan"``: the discriminator's raw output D(x);
    ``"vae"``: the ELBO (Monte-Carlo noise fixed per example and seed); ``"density"``:
    log p(x); ``"score"``: the module's forward(x) -> [B]; ``"ntk"``: forward(x) (column
    ``output`` of a [B, C] output), without centring or scaling (z = 0, I = 1).

    z and I come from a reference set, once per fit: z = E_ref[grad s] and
    I = E_ref[(grad s - z)^2] (the 1/N variance, elementwise), with ``estimator="empirical"``
    the data, ``"true"`` the model's own samples (a GAN's generator, ``sample(n)``), ``"auto"``
    the true one where the model can sample. I is floored at ``fisher_floor`` x mean(I): a
    parameter that no example moves (a dead unit) gets I = the floor, and its V coordinates are
    then exactly 0 (U = 0 there), so it adds nothing to the kernel.

    Parameters (the ``nfk fit`` flags, with the same defaults):
        model: the network: a TorchScript or nfk zoo file path, a ``torch.jit.ScriptModule`` or
            a ``torch.nn.Module`` (scripted on fit). A fitted NFK carries the model's bytes, so
            it stays usable after the module or the file is gone.
        kind: ``"classifier"``, ``"gan"``, ``"vae"``, ``"density"``, ``"score"`` or ``"ntk"``.
        rank: k, the number of NFK components (32).
        estimator: reference for z and I: ``"auto"``, ``"true"`` or ``"empirical"``.
        method: ``"auto"``, ``"exact"``, ``"per-example"``, ``"matrix-free"`` or ``"sketch"``.
        oversample, power_iters: randomized SVD probes beyond k (10) and the most iterations (10).
        tol: stop iterating once the estimated relative error of the top-k sigma is at most tol
            ("auto": 2e-4 in float32, 1e-8 in float64; 0: run all power_iters).
        solver: the randomized SVD's iteration, ``"auto"``, ``"subspace"`` or ``"block-krylov"``
            (``nfk fit --solver``).
        dtype: ``"float32"`` or ``"float64"``; device: ``"cpu"`` or ``"cuda"``.
        batch_size (256), seed (0), reference_samples (0: as many as the data),
        fisher_floor (1e-8, relative to mean I), memory_budget_mib (4096).
        generator, latent_dim: ``gan`` only: the generator (path or module) and its latent size.
        output: ``ntk`` only: the output column for [B, C] outputs.
        verbose: 1 (default) draws tqdm progress bars where tqdm is installed; 0 is silent.

    Data ``X``: a NumPy array or torch tensor [N, ...], a data source string (``"x.npy"``,
    ``"mnist:test[:1000]"``), or an iterable of batches (a ``torch.utils.data.DataLoader``, a
    generator; each batch a tensor or an (x, y, ...) tuple). Results follow the input: NumPy in,
    NumPy out; a tensor in, a tensor out on its device, in the model's dtype. ``transform``
    streams an iterable batch by batch; ``fit`` reads it once, into an unnamed temporary file
    (in TMPDIR) that the library maps and reads in place on every pass of the SVD: the inputs
    stay out of the process's memory, and every pass sees the same examples in the same order
    (a shuffled loader's one order; the training embedding's rows follow it). ``y`` is ignored.

    Attributes after ``fit``: ``singular_values_`` sigma [k], ``components_`` P^T [k, P],
    ``explained_variance_ratio_`` [k], ``mean_score_`` z [P], ``fisher_diag_`` I [P],
    ``n_floored_`` and ``floor_value_`` (the floor's effect), ``method_``, ``n_params_``,
    ``n_examples_``, ``n_features_in_``, ``plan_`` (how the fit was decided, before any work),
    ``profile_`` (where its time went), ``spectrum_`` (``nfk spectrum --json``), ``projector_``.

    Example::

        m = nfk.NFK(model="lenet.pt", kind="classifier", rank=16, seed=0)
        e_train = m.fit_transform(x_train)                 # Phi diag(sigma)  [N, 16]
        e_test = m.transform(x_test)                       # P^T V_x         [M, 16]
        make_pipeline(nfk.NFK(model=net, rank=16), LogisticRegression()).fit(x, y)
        m.save("lenet.nfk")                                # `nfk transform --projector lenet.nfk`
    """

    def __init__(self, model=None, kind="classifier", rank=32, *, estimator="auto",
                 method="auto", oversample=10, power_iters=10, tol="auto", solver="auto",
                 dtype="float32",
                 device="cpu",
                 batch_size=256, seed=0, reference_samples=0, fisher_floor=1e-8,
                 memory_budget_mib=4096, generator=None, latent_dim=0, output=-1, verbose=1):
        self.model = model
        self.kind = kind
        self.rank = rank
        self.estimator = estimator
        self.method = method
        self.oversample = oversample
        self.power_iters = power_iters
        self.tol = tol
        self.solver = solver
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
        self.verbose = verbose

    def fit(self, X, y=None):
        """Fits the projector on X [N, ...] (``nfk fit`` with this object's options). Returns
        self."""
        self._fit(X)
        return self

    def fit_transform(self, X, y=None):
        """Fits on X and returns its embedding Phi diag(sigma) [N, k] (``nfk fit
        --embedding-out``), which equals ``transform(X)`` up to rounding."""
        embedding, like = self._fit(X)
        return like.out(embedding)

    def _fit(self, X):
        mo = _model_options(self.kind, self.seed, self.dtype, self.device, self.latent_dim,
                            self.output)
        fo = _fisher_options(self.estimator, self.reference_samples, self.fisher_floor,
                             self.batch_size)
        # The SVD forms rank + oversample and 2 power_iters + 2: bounds that keep both in int64.
        rank = _check_int("rank", self.rank, 1, _INT64_MAX >> 1)
        method = _check_choice("method", self.method, _METHODS)
        oversample = _check_int("oversample", self.oversample, 0, _INT64_MAX >> 1)
        power_iters = _check_int("power_iters", self.power_iters, 0, _INT64_MAX >> 2)
        tol = _check_tol(self.tol)
        solver = _check_choice("solver", self.solver, _SOLVERS)
        memory_budget_mib = _check_int("memory_budget_mib", self.memory_budget_mib, 0,
                                       _INT64_MAX >> 20)
        x, source, like = as_inputs(X)
        if x.shape[0] < 2:  # (the library says so too; this is scikit-learn's wording)
            raise ValueError(f"nfk: X: n_samples = {x.shape[0]}: a fit needs at least 2 "
                             "examples")
        score_model, files = _load_model(mo["kind"], self.model, self.generator,
                                         mo["latent_dim"], mo["output"], mo["seed"],
                                         mo["dtype"], mo["device"], x)
        with progress(self.verbose, "fit") as bars:
            projector, embedding, plan = _nfk.fit(
                score_model, x, rank=rank, oversample=oversample, power_iters=power_iters,
                tol=float(tol), solver=solver, method=method, memory_budget_mib=memory_budget_mib, data_source=source,
                progress=bars, **fo)
        self.projector_, self._model, self._files = projector, score_model, files
        self.plan_ = json.loads(plan)
        self.n_features_in_ = n_features(x)
        return embedding, like

    def transform(self, X, batch_size=None):
        """e(x) = P^T V_x for every example of X [N, ...] -> [N, k] (``nfk transform``); an
        iterable of batches is embedded batch by batch (streamed)."""
        self._check_fitted()
        batch_size = _check_int("batch_size", self.batch_size if batch_size is None else batch_size,
                                1)
        with progress(self.verbose, "transform") as bars:
            if not is_batches(X):
                x, _, like = as_inputs(X)
                self._check_example_shape(x)
                return like.out(_nfk.transform(self.projector_, self._model, x, batch_size,
                                               progress=bars))
            outs, like = [], None
            for x, like in iter_batches(X):
                outs.append(like.out(_nfk.transform(self.projector_, self._model, x, batch_size,
                                                    progress=bars)))
        if not outs:
            raise ValueError("nfk: X: the iterable of batches is empty")
        if like.torch_device is None:
            import numpy as np

            return np.concatenate(outs)
        import torch

        return torch.cat(outs)

    def spectrum(self):
        """The NFK spectrum as ``nfk spectrum --json`` prints it (also ``spectrum_``)."""
        self._check_fitted()
        return json.loads(self.projector_.spectrum_json())

    def profile(self):
        """Where the last fit's time went (``nfk fit --json``'s "profile"; also ``profile_``):
        seconds per stage (``statistics_s``, ``gradients_s``, ``products_s``,
        ``factorizations_s``, ``total_s``), ``products``, ``product_flops``,
        ``peak_device_bytes`` (CUDA; None on the CPU) and ``method_note`` (the method and why)."""
        self._check_fitted()
        out = json.loads(self.projector_.profile_json())
        out["method_note"] = self.projector_.method_note
        return out

    def save(self, path):
        """Writes the projector file (as ``nfk fit --embed-model --out``): usable by the CLI and
        by ``NFK.load``, with the model's files inside it."""
        self._check_fitted()
        self.projector_.save(_check_path("path", path))
        return self

    @classmethod
    def load(cls, path, model=None, verbose=1):
        """An NFK from a projector file (``nfk fit --out``), with its model from the file's
        embedded copy, else its stored path, or from ``model`` (a path; its hash must match)."""
        path = _check_path("path", path)
        model = "" if model is None else _check_path("model", model)
        p = _nfk.load_projector(path)
        self = cls(model or p.model_path or None, p.kind, p.rank, method=p.method,
                   dtype=p.dtype, device="cuda" if p.device.startswith("cuda") else "cpu",
                   batch_size=p.batch_size, seed=p.seed, latent_dim=p.latent_dim,
                   output=p.output, oversample=p.svd_oversample, power_iters=p.svd_power_iters,
                   estimator=p.estimator if p.estimator in _ESTIMATORS else "auto",
                   generator=p.generator_path or None, verbose=verbose)
        self.projector_ = p
        self._model, self._files = _nfk.load_projector_model(p, model), ()
        self.plan_ = None  # the plan is not stored in projector files
        self.n_features_in_ = n_features_of_shape(p.input_shape)
        return self

    def _check_example_shape(self, x):
        """A 1-d X for a projector fitted on vectors: scikit-learn's hint (others: the library)."""
        fitted = list(self.projector_.input_shape)
        if x.ndim == 1 and fitted != []:
            raise ValueError(f"nfk: X: got a 1-d array of shape {x.shape}, the projector was "
                             f"fitted on examples of shape {fitted}: Reshape your data either "
                             "using array.reshape(-1, 1) if it has a single feature or "
                             "array.reshape(1, -1) if it contains a single sample")

    def _check_fitted(self):
        check_is_fitted(self, "projector_", msg=_NOT_FITTED)
        if not (isinstance(self.projector_, _nfk.Projector)
                and isinstance(getattr(self, "_model", None), _nfk.ScoreModel)):
            raise TypeError("nfk: this NFK's projector_ is not one that fit() or load() made, "
                            f"got {_shown(self.projector_)}")

    # Pickle, copy.deepcopy, joblib: the projector's bytes travel (model files embedded), and
    # TorchScript parameters as their serialized bytes.
    def __getstate__(self):
        return _state.getstate(super().__getstate__())

    def __setstate__(self, state):
        super().__setstate__(_state.setstate(state))

    def _fitted(name, doc):  # noqa: N805 (a helper for the class body)
        def get(self):
            check_is_fitted(self, "projector_", msg=_NOT_FITTED)
            return getattr(self.projector_, name)
        return property(get, doc=doc)

    singular_values_ = _fitted("singular_values", "sigma [k], descending (not divided by N).")
    explained_variance_ratio_ = _fitted("explained_variance_ratio",
                                        "sigma^2 / ||V||_F^2 [k] (float64).")
    mean_score_ = _fitted("mean_score", "z [P]: the reference's mean score gradient.")
    fisher_diag_ = _fitted("fisher_diag", "I [P], floored at floor_value_.")
    floor_value_ = _fitted("floor_value", "The absolute floor applied to I.")
    n_floored_ = _fitted("n_floored", "Entries of I raised to the floor (dead parameters).")
    method_ = _fitted("method", "The resolved fit method.")
    n_params_ = _fitted("n_params", "P, the number of parameters.")
    n_examples_ = _fitted("n_examples", "N, the number of training examples.")
    components_ = property(lambda self: self._fitted_basis().T,
                           doc="P^T [k, P]: the right singular vectors, one per row.")
    _n_features_out = property(lambda self: self.projector_.rank,
                               doc="k (get_feature_names_out: nfk0 ... nfk{k-1}).")
    spectrum_ = property(lambda self: self.spectrum(), doc="spectrum() as an attribute.")
    profile_ = property(lambda self: self.profile(), doc="profile() as an attribute.")
    del _fitted

    def _fitted_basis(self):
        check_is_fitted(self, "projector_", msg=_NOT_FITTED)
        return self.projector_.basis


def n_features_of_shape(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n

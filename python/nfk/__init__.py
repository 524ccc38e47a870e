"""nfk: Neural Fisher Kernel embeddings of data through a trained network.

Python front end of the nfk C++ library (the same library calls, with the same defaults, as the
``nfk`` command line, so the same arguments and seed give the same numbers, bit for bit)::

    import nfk
    m = nfk.NFK(kind="classifier", rank=32, seed=0).fit("classifier.pt", x_train)
    m.singular_values_            # sigma [k]
    e = m.transform(x_test)       # e(x) = P^T V_x  [N, k]
    m.spectrum()                  # the dict of `nfk spectrum --json`
    i = nfk.fisher_diag("classifier.pt", x_train, kind="classifier")       # I [P]
    d = nfk.fisher_distance(m, x_a, x_b)                                     # (fisher, embedding)

Data ``X`` may be a NumPy array, a torch tensor (detached and copied to the CPU) or a data source
string as the CLI takes it (``"mnist:test[:1000]"``, ``"x.npy"``). Arrays are read as ``nfk`` reads
an .npy file: uint8 is scaled to [0, 1] float32, other integers become float32, and floats are
cast to the model dtype. Models are TorchScript or nfk zoo files given by path, or an in-memory
``torch.jit.ScriptModule`` (an ``nn.Module`` is scripted first), saved to a temporary file for the
library to load. Results are NumPy arrays.

Errors raise ``FileNotFoundError`` (a missing file), ``ValueError`` (a rejected input, option or
model), ``TypeError`` (an argument of the wrong type, an array of an unsupported dtype),
``MemoryError`` (an allocation LibTorch could not make) or
``RuntimeError``, with the one-line message the CLI prints. Options are checked before any work.
LibTorch's warnings during a call come out as ``warnings.warn`` (UserWarning), and Ctrl-C stops a
long call (``KeyboardInterrupt``) between batches.
"""
import collections
import json
import math
import numbers
import os
import shutil
import sys
import tempfile
import weakref

import numpy as np

from . import _nfk

__version__ = _nfk.__version__
__all__ = ["NFK", "fisher_diag", "fisher_distance", "load_dataset", "SetDistance",
           "get_num_threads", "set_num_threads", "set_tf32", "tf32_allowed"]

# --- argument checks: one line naming the parameter and what it accepts -----------------------

_KINDS = ("classifier", "gan", "vae", "density", "score", "ntk")
_ESTIMATORS = ("auto", "true", "empirical")
_METHODS = ("auto", "exact", "per-example", "matrix-free", "sketch")
_DTYPES = ("float32", "float64")
_DEVICES = ("cpu", "cuda")
_INT64_MAX = 2**63 - 1
_UINT64_MAX = 2**64 - 1


def _shown(value):
    """A short one-line description of a rejected value."""
    try:
        text = repr(value).replace("\n", " ")
    except ValueError:  # an int with more digits than Python converts to text
        text = "<a huge number>"
    if len(text) > 60:
        text = text[:57] + "..."
    return text if isinstance(value, (numbers.Number, str)) else f"{type(value).__name__} {text}"


def _check_int(name, value, low, high=_INT64_MAX):
    """`value` as an int in [low, high]; TypeError for a non-integer (bool included)."""
    if high == _INT64_MAX:
        bounds = f">= {low}"
    else:  # 2**62 - 1 reads better than 4611686018427387903
        bits = (high + 1).bit_length() - 1
        shown = f"2**{bits} - 1" if bits > 32 and high + 1 == 2**bits else str(high)
        bounds = f"in [{low}, {shown}]"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"nfk: {name} must be an integer {bounds}, got {_shown(value)}")
    value = int(value)
    if not low <= value <= high:
        raise ValueError(f"nfk: {name} must be {bounds}, got {_shown(value)}")
    return value


def _check_positive_float(name, value):
    """`value` as a finite float > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"nfk: {name} must be a finite number > 0, got {_shown(value)}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        number = math.inf
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"nfk: {name} must be a finite number > 0, got {_shown(value)}")
    value = number
    return value


def _check_choice(name, value, choices):
    if not isinstance(value, str) or value not in choices:
        accepted = ", ".join(repr(c) for c in choices)
        error = ValueError if isinstance(value, str) else TypeError
        raise error(f"nfk: {name} must be one of {accepted}, got {_shown(value)}")
    return value


def _check_path(name, value):
    if not isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(f"nfk: {name} must be a file path, got {_shown(value)}")
    path = os.fsdecode(value)
    if not path or "\0" in path:
        raise ValueError(f"nfk: {name} must be a file path, got {path!r}")
    return path


def _model_options(kind, seed, dtype, device, latent_dim, output):
    """The options of a score model, checked (load_score_model's arguments)."""
    return dict(kind=_check_choice("kind", kind, _KINDS),
                seed=_check_int("seed", seed, 0, _UINT64_MAX),
                dtype=_check_choice("dtype", dtype, _DTYPES),
                device=_check_choice("device", device, _DEVICES),
                latent_dim=_check_int("latent_dim", latent_dim, 0),
                output=_check_int("output", output, -1))


def _fisher_options(estimator, reference_samples, fisher_floor, batch_size):
    return dict(estimator=_check_choice("estimator", estimator, _ESTIMATORS),
                reference_samples=_check_int("reference_samples", reference_samples, 0),
                fisher_floor=_check_positive_float("fisher_floor", fisher_floor),
                batch_size=_check_int("batch_size", batch_size, 1))


SetDistance = collections.namedtuple("SetDistance", ["fisher", "embedding"])
SetDistance.__doc__ = """Distance between two sets (AFV): ``fisher`` = ||mean_A V - mean_B V||
over all P Fisher-vector coordinates, ``embedding`` = ||mean_A e - mean_B e|| in the rank-k NFK
embedding."""


def load_dataset(source):
    """Loads a data source as the CLI's ``--data`` does: ``(inputs, labels)`` as NumPy arrays.

    ``source`` is a named set (``"mnist:train"``, ``"fashion-mnist:test"``), an .npy or IDX
    file, optionally with ``[:n]`` to keep the first n examples. ``labels`` is None when the
    source has none. Example: ``x, y = nfk.load_dataset("mnist:test[:1000]")``.
    """
    return _nfk.load_dataset(_check_path("source", source))


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


class _ModelFile:
    """A model given as a path or as an in-memory module saved to a temporary file.

    The temporary folder lives as long as this object (it is removed when it is collected).
    """

    def __init__(self, model):
        self.path = None
        if model is None:
            return
        if isinstance(model, (str, bytes, os.PathLike)):
            self.path = _check_path("model", model)
            return
        if not hasattr(model, "save") or not hasattr(model, "graph"):
            import torch  # only reached with an in-memory torch module

            if not isinstance(model, torch.nn.Module):
                raise TypeError("nfk: a model is a file path, a torch.jit.ScriptModule or a "
                                f"torch.nn.Module, got {_shown(model)}")
            try:
                model = torch.jit.script(model)
            except Exception as e:  # TorchScript's compiler: the cause, then source excerpts
                cause = next((line for line in str(e).splitlines() if line.strip()), repr(e))
                raise ValueError(f"nfk: torch.jit.script cannot compile the {type(model).__name__}"
                                 f" model ({cause.strip()}); pass a torch.jit.trace'd module or "
                                 "a saved TorchScript file") from e
        tmp = tempfile.mkdtemp(prefix="nfk_model_")
        self._cleanup = weakref.finalize(self, shutil.rmtree, tmp, True)
        self.path = os.path.join(tmp, "model.pt")
        model.save(self.path)


def _load_model(kind, model, generator=None, latent_dim=0, output=-1, seed=0, dtype="float32",
                device="cpu", probe=None):
    """(ScoreModel, files that must outlive it) as `load_score_model` builds it for the CLI.
    The options are checked already (_model_options)."""
    if model is None:
        raise TypeError("nfk: a model is required (a file path, a torch.jit.ScriptModule or a "
                        "torch.nn.Module)")
    files = (_ModelFile(model), _ModelFile(generator))
    score_model = _nfk.load_score_model(kind, files[0].path, files[1].path or "", latent_dim,
                                        output, seed, dtype, device, probe)
    return score_model, files


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

"""Argument checks of the nfk package: one line naming the parameter and what it accepts."""
import math
import numbers
import os

_KINDS = ("classifier", "gan", "vae", "density", "score", "ntk")
_ESTIMATORS = ("auto", "true", "empirical")
_METHODS = ("auto", "exact", "per-example", "matrix-free", "sketch")
_SOLVERS = ("auto", "subspace", "block-krylov")
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


def _check_tol(value):
    """An SVD tolerance: "auto" (-1.0: the dtype's default) or a number in [0, 1)."""
    tol = -1.0 if isinstance(value, str) and value == "auto" else value
    if not isinstance(tol, (int, float)) or isinstance(tol, bool) or not (
            tol == -1.0 or 0 <= tol < 1):
        raise ValueError(f"nfk: tol must be 'auto' or a number in [0, 1), got {_shown(value)}")
    return float(tol)


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

"""Models given to the nfk package: a path, or an in-memory module saved to a temporary file."""
import copy
import os
import shutil
import tempfile
import weakref

from . import _nfk
from ._validate import _check_path, _shown


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
            try:  # a copy: scripting must not touch the caller's module (an estimator parameter)
                model = torch.jit.script(copy.deepcopy(model))
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

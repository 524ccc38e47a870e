"""Pickling a fitted NFK: the projector's bytes (with its model files embedded) and TorchScript
modules as their serialized bytes, so that pickle, copy.deepcopy and joblib see plain data."""
import io
import os
import shutil
import tempfile

from . import _nfk


class _TorchScriptBytes:
    """A torch.jit.ScriptModule given as a parameter, pickled as torch.jit.save's bytes."""

    def __init__(self, data):
        self.data = data

    @classmethod
    def of(cls, value):
        """The portable form of a parameter value: a ScriptModule becomes its bytes."""
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.jit.ScriptModule):
            buf = io.BytesIO()
            torch.jit.save(value, buf)
            return cls(buf.getvalue())
        return value

    @staticmethod
    def restore(value):
        if not isinstance(value, _TorchScriptBytes):
            return value
        import torch

        return torch.jit.load(io.BytesIO(value.data))


class _ProjectorBytes:
    """A fitted projector as the bytes of its file (``nfk fit --out``, model embedded)."""

    def __init__(self, data):
        self.data = data

    @classmethod
    def of(cls, projector):
        tmp = tempfile.mkdtemp(prefix="nfk_state_")
        try:
            path = os.path.join(tmp, "p.nfk")
            projector.save(path)
            with open(path, "rb") as f:
                return cls(f.read())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def load(self):
        """(Projector, ScoreModel): the projector and its model, rebuilt from the embedded files."""
        tmp = tempfile.mkdtemp(prefix="nfk_state_")
        try:
            path = os.path.join(tmp, "p.nfk")
            with open(path, "wb") as f:
                f.write(self.data)
            projector = _nfk.load_projector(path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return projector, _nfk.load_projector_model(projector, "")


# The parameters that may hold torch modules.
_MODULE_PARAMS = ("model", "generator")


def getstate(state):
    """A picklable copy of an NFK's __dict__."""
    state = dict(state)
    for name in _MODULE_PARAMS:
        if name in state:
            state[name] = _TorchScriptBytes.of(state[name])
    if state.get("projector_") is not None:
        state["projector_"] = _ProjectorBytes.of(state["projector_"])
    state.pop("_model", None)
    state.pop("_files", None)
    return state


def setstate(state):
    """The __dict__ of an NFK from getstate's copy."""
    state = dict(state)
    for name in _MODULE_PARAMS:
        if name in state:
            state[name] = _TorchScriptBytes.restore(state[name])
    if isinstance(state.get("projector_"), _ProjectorBytes):
        state["projector_"], state["_model"] = state["projector_"].load()
        state["_files"] = ()
    return state

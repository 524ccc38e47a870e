"""LibTorch warnings during a call of the Python bindings come out as `warnings.warn`
(UserWarning), attributed to the caller's line (issue 11, defect 12).
"""
import warnings

import pytest
import torch

import nfk
from support import one_line


class Interacting(torch.nn.Module):
    """Logits that depend on the other examples of the batch: the layer tape's rows disagree with
    the per-example loop, so nfk warns (TORCH_WARN) that it falls back to the loop."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 3)

    def forward(self, x):
        h = self.fc(x.flatten(1))
        return h - 0.5 * h.mean(0, keepdim=True)


class Warns(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 3)

    def forward(self, x):
        warnings.warn("a warning from the model's own code")
        return self.fc(x.flatten(1))


class WarnsThenFails(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(64, 3)

    def forward(self, x):
        if x.size(0) > 3:  # the load's 2-example probe passes, the Fisher pass fails
            warnings.warn("about to fail")
            raise RuntimeError("boom")
        return self.fc(x.flatten(1))


def test_warnings_of_a_failing_call(d, x):
    torch.jit.script(WarnsThenFails().eval()).save(str(d / "warns_then_fails.pt"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError, match="boom") as e:
            nfk.fisher_diag(d / "warns_then_fails.pt", x, kind="classifier")
    one_line(e)
    assert [str(w.message) for w in caught] == ["about to fail"]
    # A filter that makes warnings errors does not replace the error in flight.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(RuntimeError, match="boom"):
            nfk.fisher_diag(d / "warns_then_fails.pt", x, kind="classifier")


def test_libtorch_warnings_become_python_warnings(d, x, capfd):
    torch.manual_seed(0)
    torch.jit.script(Interacting().eval()).save(str(d / "interacting.pt"))
    torch.jit.script(Warns().eval()).save(str(d / "warns.pt"))
    capfd.readouterr()
    for model, text in [("interacting.pt", "take one backward pass per example"),
                        ("warns.pt", "a warning from the model's own code")]:
        with warnings.catch_warnings(record=True) as caught:
            # Python's default: once per location. nfk attributes each warning to the line that
            # called it, so one call warns once although the model ran in two binding calls.
            warnings.simplefilter("default")
            nfk.fisher_diag(d / model, x, kind="classifier")
        ours = [w for w in caught if text in str(w.message)]
        assert len(ours) == 1, [str(w.message) for w in caught]
        assert ours[0].category is UserWarning
        assert ours[0].filename == __file__  # attributed to the caller of nfk
        # Not printed by LibTorch's default handler (glog lines on stderr).
        assert text not in capfd.readouterr().err
    # A filter that makes warnings errors makes this one an error.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="one backward pass per example"):
            nfk.NFK(d / "interacting.pt", "classifier", rank=2).fit(x)
    # PyTorch's own warnings still reach Python through PyTorch's handler afterwards.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.ones(3)[torch.tensor([1, 0, 1], dtype=torch.uint8)]
    assert any("uint8" in str(w.message) for w in caught)

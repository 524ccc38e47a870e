"""nfk and PyTorch in one process (issue 11, defect 8): `import nfk` leaves PyTorch's exceptions
alone, nfk's own errors are still translated, and the TF32 switch is LibTorch's shared one.
"""
import io
import subprocess
import sys
import textwrap

import pytest
import torch

import nfk


TORCH_ERRORS = textwrap.dedent("""
    import io
    import sys
    if sys.argv[1] == "with-nfk":
        import nfk
    import torch

    def fails(f):
        try:
            f()
        except BaseException as e:
            print(type(e).__module__, type(e).__qualname__, repr(str(e).splitlines()[:3]))
        else:
            print("no error")

    def bad_script():
        @torch.jit.script
        def f(x: int) -> str:
            return x + 1
    lin = torch.jit.script(torch.nn.Linear(3, 2))
    fails(lambda: torch.zeros(2) @ torch.zeros(3))
    fails(bad_script)
    fails(lambda: torch.jit.load(io.BytesIO(b"not a model")))
    fails(lambda: lin(torch.zeros(4, 5)))
    fails(lambda: torch.ones(2)[5])
    fails(lambda: torch.load("/nonexistent/t.pt"))
    fails(lambda: torch.zeros(2, 2).view(5))
""")


def test_import_leaves_torch_exceptions_alone(tmp_path):
    script = tmp_path / "torch_errors.py"
    script.write_text(TORCH_ERRORS)

    def run(mode):
        r = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout.splitlines()

    without, with_nfk = run("without-nfk"), run("with-nfk")
    assert len(without) == 7 and "no error" not in without
    assert with_nfk == without
    # The same in this process, which imported nfk and ran it.
    with pytest.raises(RuntimeError) as e:
        torch.jit.load(io.BytesIO(b"not a model"))
    assert not str(e.value).startswith("nfk") and str(e.value)


def test_nfk_errors_are_still_translated(d, x):
    with pytest.raises(FileNotFoundError, match="(?i)^nfk: .*no such file"):
        nfk.NFK(d / "nope.pt", "classifier").fit(x)
    with pytest.raises(ValueError, match="^nfk::fit: rank must be in"):
        nfk.NFK(d / "cnn.pt", "classifier", rank=1000).fit(x)


def test_tf32_switch_is_the_shared_libtorch_flag():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        nfk.set_tf32(True)
        assert nfk.tf32_allowed()
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        nfk.set_tf32(False)
        assert not nfk.tf32_allowed()
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before

"""Helpers shared by the tests of the Python bindings (fixtures are in conftest.py): the `nfk` CLI
to compare with, and the small PyTorch models of the CLI's TorchScript interop check."""
import os
import subprocess
import sys

# The same small PyTorch models as the CLI's TorchScript interop check.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "cli"))
from torchscript_interop import Cnn, Disc, Gen  # noqa: E402,F401 (for the tests)

NFK_CLI = os.environ.get(
    "NFK_CLI", os.path.join(os.path.dirname(__file__), "..", "..", "build", "nfk"))
N = 64
# float32 reductions depend on the intra-op thread count: pin it on both sides (the CLI reads
# OMP_NUM_THREADS; importing torch may already have set this process to 1 thread). One thread
# also keeps these tiny fits fast on a busy machine, where OpenMP threads spin-wait.
THREADS = 1
CLI_ENV = dict(os.environ, OMP_NUM_THREADS=str(THREADS))


def cli(*args):
    r = subprocess.run([NFK_CLI, *map(str, args)], capture_output=True, text=True, env=CLI_ENV)
    assert r.returncode == 0, r.stderr
    return r.stdout


def cli_error(*args):
    """The one line `nfk` prints on stderr for a failing command."""
    r = subprocess.run([NFK_CLI, *map(str, args)], capture_output=True, text=True, env=CLI_ENV)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    return lines[0]


CNN = dict(model="cnn.pt", kind="classifier", cli=[])
GAN = dict(model="disc.pt", kind="gan", cli=["--generator", "gen.pt", "--latent-dim", "4"])


def cli_flags(opts):
    return [a for k, v in opts.items() for a in (f"--{k.replace('_', '-')}", v)]


def nfk_options(model, d, opts):
    extra = {}
    if model is GAN:
        extra = dict(generator=str(d / "gen.pt"), latent_dim=4)
    return dict(opts, **extra)


def one_line(e):
    text = str(e.value)
    assert "\n" not in text, text
    assert text.startswith("nfk"), text
    return text

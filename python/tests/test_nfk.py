"""The Python bindings against the `nfk` CLI: the same fit/transform/fisher/distance calls with
the same arguments must give exactly the same numbers (np.array_equal), and errors the same
one-line messages. Against an independent implementation: z, I, the Fisher vectors V and their
SVD from functorch per-example gradients (vmap(grad)) in float64; MNIST against its IDX files.

Run by ctest (`python_bindings`) with PYTHONPATH=<build>/python and NFK_CLI=<build>/nfk; by hand:
    PYTHONPATH=build/python NFK_CLI=build/nfk /usr/bin/python3 -m pytest -q python/tests
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import nfk

# The same small PyTorch models as the CLI's TorchScript interop check.
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "cli"))
from torchscript_interop import Cnn, Disc, Gen  # noqa: E402

NFK_CLI = os.environ.get(
    "NFK_CLI", os.path.join(os.path.dirname(__file__), "..", "..", "build", "nfk"))
N = 64
# float32 reductions depend on the intra-op thread count: pin it on both sides (the CLI reads
# OMP_NUM_THREADS; importing torch may already have set this process to 1 thread). One thread
# also keeps these tiny fits fast on a busy machine, where OpenMP threads spin-wait.
THREADS = 1
CLI_ENV = dict(os.environ, OMP_NUM_THREADS=str(THREADS))
nfk.set_num_threads(THREADS)


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    """Models (TorchScript, written by PyTorch) and data sets in a temporary folder."""
    d = tmp_path_factory.mktemp("nfk")
    torch.manual_seed(0)
    torch.jit.script(Cnn().eval()).save(str(d / "cnn.pt"))
    torch.jit.script(Disc().eval()).save(str(d / "disc.pt"))
    torch.jit.script(Gen().eval()).save(str(d / "gen.pt"))
    rng = np.random.default_rng(0)
    np.save(d / "x64.npy", rng.random((N, 1, 8, 8)))                     # float64
    np.save(d / "x32.npy", rng.random((N, 1, 8, 8), dtype=np.float32))  # float32
    np.save(d / "xu8.npy", rng.integers(0, 256, (N, 1, 8, 8), dtype=np.uint8))
    np.save(d / "y32.npy", rng.random((N // 2, 1, 8, 8), dtype=np.float32))
    np.save(d / "bad_shape.npy", rng.random((8, 3, 5, 5), dtype=np.float32))
    return d


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

# (model, data, NFK options): every fit method, both dtypes, and a GAN whose z and I come from
# seeded generator samples (true Fisher) or from the data.
FITS = [
    (CNN, "x64.npy", dict(method="exact", dtype="float64", rank=8)),
    (CNN, "x32.npy", dict(method="per-example", rank=8, seed=3)),
    (CNN, "x32.npy", dict(method="matrix-free", rank=6, oversample=4, power_iters=3, seed=5)),
    (CNN, "x32.npy", dict(method="sketch", rank=6, oversample=8, seed=2)),
    (CNN, "xu8.npy", dict(rank=4, batch_size=16, estimator="empirical")),
    (GAN, "x32.npy", dict(method="matrix-free", rank=4, power_iters=2, seed=7, estimator="true",
                          reference_samples=40)),
    (GAN, "x64.npy", dict(method="per-example", dtype="float64", rank=4, estimator="empirical")),
]


def cli_flags(opts):
    return [a for k, v in opts.items() for a in (f"--{k.replace('_', '-')}", v)]


def nfk_options(model, d, opts):
    extra = {}
    if model is GAN:
        extra = dict(generator=str(d / "gen.pt"), latent_dim=4)
    return dict(opts, **extra)


@pytest.mark.parametrize("model,data,opts", FITS,
                         ids=[f"{m['kind']}-{x}-{o.get('method', 'auto')}" for m, x, o in FITS])
def test_fit_transform_spectrum_match_cli(d, model, data, opts):
    path = d / model["model"]
    gen = [str(d / a) if a.endswith(".pt") else a for a in model["cli"]]
    tag = f"{model['kind']}_{data}_{opts.get('method', 'auto')}"
    cli_fit = json.loads(cli("fit", "--model", path, "--kind", model["kind"], *gen, "--data",
                             d / data, *cli_flags(opts), "--out", d / f"{tag}.nfk",
                             "--embedding-out", d / f"{tag}_emb.npy", "--quiet", "--json"))
    cli("transform", "--projector", d / f"{tag}.nfk", "--data", d / "y32.npy",
        "--out", d / f"{tag}_y.npy", "--quiet")
    cli_spectrum = json.loads(cli("spectrum", "--projector", d / f"{tag}.nfk", "--json"))

    m = nfk.NFK(model["kind"], **nfk_options(model, d, opts))
    emb = m.fit_transform(str(path), np.load(d / data))
    ref = nfk.NFK.load(d / f"{tag}.nfk")

    assert m.method_ == ref.method_ == cli_spectrum["method"]
    for attr in ["singular_values_", "components_", "mean_score_", "fisher_diag_",
                 "explained_variance_ratio_"]:
        assert np.array_equal(getattr(m, attr), getattr(ref, attr)), attr
    assert emb.shape == (N, m.rank)
    assert np.array_equal(emb, np.load(d / f"{tag}_emb.npy"))
    assert np.array_equal(m.transform(np.load(d / "y32.npy")), np.load(d / f"{tag}_y.npy"))
    assert np.array_equal(ref.transform(d / "y32.npy"), np.load(d / f"{tag}_y.npy"))
    assert m.spectrum() == cli_spectrum
    prof = m.profile()  # where the time went: stages within the total, products by method
    stages = ["statistics_s", "gradients_s", "products_s", "factorizations_s"]
    assert all(prof[k] >= 0 for k in stages)
    assert sum(prof[k] for k in stages) <= prof["total_s"] * (1 + 1e-9)
    assert prof["peak_device_bytes"] is None and prof["method_note"]
    expected = {"exact": 0, "sketch": 2}.get(m.method_, 2 * m.power_iters + 2)
    assert prof["products"] == expected, (m.method_, prof)
    # `nfk fit --json`: the same spectrum, method and products as the library call.
    assert cli_fit["spectrum"] == cli_spectrum
    assert cli_fit["method_note"] == prof["method_note"]
    assert cli_fit["profile"]["products"] == expected
    assert cli_fit["profile"]["product_flops"] == prof["product_flops"]
    assert np.array_equal(m.singular_values_, np.array(cli_spectrum["singular_values"],
                                                       dtype=m.singular_values_.dtype))

    # A projector saved from Python is a CLI projector.
    m.save(d / f"{tag}_py.nfk")
    cli("transform", "--projector", d / f"{tag}_py.nfk", "--data", d / "y32.npy",
        "--out", d / f"{tag}_py_y.npy", "--quiet")
    assert np.array_equal(np.load(d / f"{tag}_py_y.npy"), np.load(d / f"{tag}_y.npy"))


def test_input_forms_agree(d):
    """A path string, NumPy array, torch tensor, ScriptModule and nn.Module give the same fit."""
    x = np.load(d / "x32.npy")
    base = nfk.NFK("classifier", rank=4, seed=1).fit(str(d / "cnn.pt"), x)
    cnn = torch.jit.load(str(d / "cnn.pt"))
    for model, data in [(d / "cnn.pt", str(d / "x32.npy")), (cnn, torch.from_numpy(x)),
                        (str(d / "cnn.pt"), x[:, :, ::1, :].copy())]:
        m = nfk.NFK("classifier", rank=4, seed=1).fit(model, data)
        assert np.array_equal(m.singular_values_, base.singular_values_)
        assert np.array_equal(m.transform(torch.from_numpy(x[:5])), base.transform(x[:5]))
    # An (unscripted) nn.Module with the same weights is scripted first.
    eager = Cnn()
    eager.load_state_dict({k: v for k, v in cnn.state_dict().items()})
    m = nfk.NFK("classifier", rank=4, seed=1).fit(eager, x)
    assert np.array_equal(m.singular_values_, base.singular_values_)
    # The same call gives the same numbers however often the model has run in this process.
    first = base.transform(x)
    assert all(np.array_equal(base.transform(x), first) for _ in range(3))
    # Non-contiguous arrays are copied.
    assert np.array_equal(base.transform(np.asfortranarray(x[:5])), base.transform(x[:5]))


@pytest.mark.parametrize("model,data,opts", [
    (CNN, "x32.npy", {}),
    (CNN, "x64.npy", dict(dtype="float64", reference_samples=20, seed=2)),
    (GAN, "x32.npy", dict(estimator="true", seed=4)),
], ids=["classifier", "classifier-f64-subset", "gan-true"])
def test_fisher_diag_matches_cli(d, model, data, opts):
    gen = [str(d / a) if a.endswith(".pt") else a for a in model["cli"]]
    tag = f"fisher_{model['kind']}_{data}"
    cli("fisher", "--model", d / model["model"], "--kind", model["kind"], *gen,
        "--data", d / data, *cli_flags(opts), "--out", d / f"{tag}_i.npy",
        "--mean-out", d / f"{tag}_z.npy", "--quiet")
    i, z = nfk.fisher_diag(d / model["model"], np.load(d / data), kind=model["kind"],
                           return_mean=True, **nfk_options(model, d, opts))
    assert np.array_equal(i, np.load(d / f"{tag}_i.npy"))
    assert np.array_equal(z, np.load(d / f"{tag}_z.npy"))


def test_fisher_distance_matches_cli(d):
    cli("fit", "--model", d / "cnn.pt", "--kind", "classifier", "--data", d / "x32.npy",
        "--rank", 4, "--seed", 9, "--out", d / "dist.nfk", "--quiet")
    out = json.loads(cli("distance", "--projector", d / "dist.nfk", "--a", d / "x32.npy",
                         "--b", d / "y32.npy", "--json"))
    m = nfk.NFK("classifier", rank=4, seed=9).fit(d / "cnn.pt", np.load(d / "x32.npy"))
    for p in [m, d / "dist.nfk"]:
        dist = nfk.fisher_distance(p, np.load(d / "x32.npy"), torch.from_numpy(np.load(d / "y32.npy")))
        assert (dist.fisher, dist.embedding) == (out["fisher"], out["embedding"])
        assert dist.fisher > 0


def _mnist_idx(name, root):
    """An MNIST IDX file read here with NumPy (big-endian header, then uint8 values)."""
    import gzip
    path = os.path.join(root, "mnist", name)
    opener = open
    if not os.path.exists(path):
        path, opener = path + ".gz", gzip.open
    with opener(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def test_named_set(d):
    """Data source strings are read by the library, as by the CLI (MNIST from scripts/setup),
    and hold the IDX files' values."""
    root = os.environ.get("NFK_DATA_DIR",
                          os.path.join(os.path.dirname(__file__), "..", "..", "data"))
    if not any(os.path.exists(os.path.join(root, "mnist", "t10k-images-idx3-ubyte" + gz))
               for gz in ("", ".gz")):
        pytest.skip(f"MNIST is not installed under {root} (run scripts/setup)")
    x, y = nfk.load_dataset("mnist:test[:16]")
    assert x.shape == (16, 1, 28, 28) and x.dtype == np.float32 and y.shape == (16,)
    images = _mnist_idx("t10k-images-idx3-ubyte", root)[:16]
    labels = _mnist_idx("t10k-labels-idx1-ubyte", root)[:16]
    assert np.array_equal(x, (images.astype(np.float32) / 255).reshape(16, 1, 28, 28))
    assert np.array_equal(y, labels.astype(y.dtype)) and y.dtype == np.int64
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 3)).eval()
    torch.jit.script(mlp).save(str(d / "mlp.pt"))
    cli("fit", "--model", d / "mlp.pt", "--kind", "classifier", "--data", "mnist:test[:16]",
        "--rank", 3, "--out", d / "mlp.nfk", "--embedding-out", d / "mlp_emb.npy", "--quiet")
    m = nfk.NFK("classifier", rank=3)
    assert np.array_equal(m.fit_transform(d / "mlp.pt", "mnist:test[:16]"),
                          np.load(d / "mlp_emb.npy"))
    assert m.projector_.data_source == "mnist:test[:16]"


# --- against an independent implementation: functorch per-example gradients in float64 ------

try:  # torch 2.x
    from torch.func import functional_call, grad, vmap

    def _make_functional(module):
        names = [name for name, _ in module.named_parameters()]

        def fmodel(ps, x):
            return functional_call(module, dict(zip(names, ps)), (x,))

        return fmodel, tuple(p.detach() for _, p in module.named_parameters())
except ImportError:  # torch 1.13 (Debian's python3-torch): functorch
    from functorch import grad, make_functional as _make_functional, vmap


def _eager(cls, path):
    """The eager module of `cls` with the weights of the TorchScript file, in float64."""
    net = cls()
    net.load_state_dict(torch.jit.load(str(path)).state_dict())
    return net.double().eval()


def _functorch_jacobian(kind, net, x):
    """J [N, P]: vmap(grad(s)) over the examples, parameters in named_parameters order (the
    order nfk flattens them in); s = logsumexp of the logits (classifier) or D(x) (gan)."""
    fmodel, params = _make_functional(net)

    def score(ps, xi):
        out = fmodel(ps, xi.unsqueeze(0))
        return torch.logsumexp(out, dim=1)[0] if kind == "classifier" else out.reshape(-1)[0]

    grads = vmap(grad(score), in_dims=(None, 0))(params, torch.as_tensor(x, dtype=torch.float64))
    return torch.cat([g.reshape(g.shape[0], -1) for g in grads], dim=1).detach()


INDEPENDENT = [(CNN, Cnn), (GAN, Disc)]


@pytest.mark.parametrize("model,cls", INDEPENDENT, ids=["classifier", "gan"])
def test_exact_fit_matches_functorch_fisher_vectors(d, model, cls):
    """z, I, V = (J - z) / sqrt(I), its SVD and the embeddings, from functorch in float64,
    against nfk's exact fit (empirical Fisher, default floor 1e-8 * mean I)."""
    x, y = np.load(d / "x64.npy"), np.load(d / "y32.npy").astype(np.float64)
    net = _eager(cls, d / model["model"])
    j = _functorch_jacobian(model["kind"], net, x)
    z = j.mean(0)
    fisher = ((j - z) ** 2).mean(0)
    fisher = fisher.clamp_min(1e-8 * fisher.mean())
    v = (j - z) / fisher.sqrt()
    v_y = (_functorch_jacobian(model["kind"], net, y) - z) / fisher.sqrt()
    _, s_ref, vh_ref = torch.linalg.svd(v, full_matrices=False)
    rank = 6
    assert (s_ref[:rank] / s_ref[1:rank + 1]).min() > 1.01, "well-separated top singular values"

    opts = dict(method="exact", dtype="float64", rank=rank, estimator="empirical")
    m = nfk.NFK(model["kind"], **nfk_options(model, d, opts))
    emb = m.fit_transform(str(d / model["model"]), x)
    assert m.n_params_ == j.shape[1]
    np.testing.assert_allclose(m.mean_score_, z.numpy(), rtol=1e-10, atol=1e-12 * z.abs().max())
    np.testing.assert_allclose(m.fisher_diag_, fisher.numpy(), rtol=1e-9)
    np.testing.assert_allclose(m.singular_values_, s_ref[:rank].numpy(), rtol=1e-10)
    # Right singular vectors up to sign: |<p_i, p_ref_i>| = 1.
    cos = np.abs(np.sum(m.components_ * vh_ref[:rank].numpy(), axis=1))
    np.testing.assert_allclose(cos, 1.0, atol=1e-8)
    # e(x) = P^T V_x for the training set and for new data.
    p = torch.from_numpy(np.ascontiguousarray(m.components_.T))
    scale = (v @ p).abs().max().item()
    np.testing.assert_allclose(emb, (v @ p).numpy(), atol=1e-9 * scale)
    np.testing.assert_allclose(m.transform(y), (v_y @ p).numpy(), atol=1e-9 * scale)
    # nfk.fisher_diag (``nfk fisher``): the same z and I.
    i_api, z_api = nfk.fisher_diag(d / model["model"], x, kind=model["kind"], return_mean=True,
                                   **nfk_options(model, d, dict(dtype="float64",
                                                                estimator="empirical")))
    np.testing.assert_allclose(i_api, fisher.numpy(), rtol=1e-9)
    np.testing.assert_allclose(z_api, z.numpy(), rtol=1e-10, atol=1e-12 * z.abs().max())


def test_randomized_fit_matches_functorch_spectrum(d):
    """The per-example randomized SVD (k = 4, 10 power iterations) in float64 against the
    functorch SVD of V: SPEC section 5's accuracy for well-separated values."""
    x = np.load(d / "x64.npy")
    net = _eager(Cnn, d / "cnn.pt")
    j = _functorch_jacobian("classifier", net, x)
    z = j.mean(0)
    fisher = ((j - z) ** 2).mean(0)
    v = (j - z) / fisher.clamp_min(1e-8 * fisher.mean()).sqrt()
    s_ref = torch.linalg.svdvals(v)
    m = nfk.NFK("classifier", rank=4, method="per-example", dtype="float64",
                estimator="empirical", seed=1).fit(str(d / "cnn.pt"), x)
    np.testing.assert_allclose(m.singular_values_, s_ref[:4].numpy(), rtol=1e-6)
    # explained-variance ratio: sigma^2 / ||V||_F^2 with V resident (exact total variance).
    np.testing.assert_allclose(m.explained_variance_ratio_,
                               (s_ref[:4] ** 2 / (v ** 2).sum()).numpy(), rtol=1e-6)


# --- errors: the CLI's one-line messages as Python exceptions ----------------------------------

def test_missing_model_file(d):
    line = cli_error("fit", "--model", d / "nope.pt", "--kind", "classifier",
                     "--data", d / "x32.npy", "--out", d / "e.nfk")
    with pytest.raises(FileNotFoundError) as e:
        nfk.NFK("classifier").fit(str(d / "nope.pt"), np.load(d / "x32.npy"))
    assert str(e.value) == line
    assert line.startswith("nfk: ") and "no such file" in line.lower()


def test_missing_data_file(d):
    line = cli_error("fit", "--model", d / "cnn.pt", "--kind", "classifier",
                     "--data", d / "nope.npy", "--out", d / "e.nfk")
    with pytest.raises(FileNotFoundError) as e:
        nfk.NFK("classifier").fit(d / "cnn.pt", d / "nope.npy")
    assert str(e.value) == line


def test_bad_shape(d):
    line = cli_error("fit", "--model", d / "cnn.pt", "--kind", "classifier",
                     "--data", d / "bad_shape.npy", "--out", d / "e.nfk")
    with pytest.raises(ValueError) as e:
        nfk.NFK("classifier").fit(str(d / "cnn.pt"), np.load(d / "bad_shape.npy"))
    assert str(e.value) == line
    # transform with a fitted projector: the same message as `nfk transform`.
    cli("fit", "--model", d / "cnn.pt", "--kind", "classifier", "--data", d / "x32.npy",
        "--rank", 2, "--out", d / "shape.nfk", "--quiet")
    line = cli_error("transform", "--projector", d / "shape.nfk", "--data", d / "bad_shape.npy",
                     "--out", d / "e.npy")
    with pytest.raises(ValueError) as e:  # checked against the fitted example shape
        nfk.NFK.load(d / "shape.nfk").transform(np.load(d / "bad_shape.npy"))
    assert str(e.value) == line
    assert "expects [N, 1, 8, 8]" in line


def test_bad_options(d):
    x = np.load(d / "x32.npy")
    # A rank beyond the data: the same line from the CLI and from Python (the library refuses it).
    line = cli_error("fit", "--model", d / "cnn.pt", "--kind", "classifier", "--data",
                     d / "x32.npy", "--rank", 1000, "--out", d / "e.nfk")
    with pytest.raises(ValueError) as e:
        nfk.NFK("classifier", rank=1000).fit(d / "cnn.pt", x)
    assert str(e.value) == line
    # The CLI refuses --rank 0 while parsing, the Python layer before any work
    # (test_reliability.py has every option).
    assert cli_error("fit", "--model", d / "cnn.pt", "--kind", "classifier", "--data",
                     d / "x32.npy", "--rank", 0, "--out", d / "e.nfk").startswith("nfk: --rank: ")
    with pytest.raises(ValueError, match=r"^nfk: rank must be in \[1, 2\*\*62 - 1\], got 0$"):
        nfk.NFK("classifier", rank=0).fit(d / "cnn.pt", x)
    with pytest.raises(ValueError, match="kind"):
        nfk.NFK("regressor").fit(d / "cnn.pt", x)
    with pytest.raises(ValueError, match="^nfk: .*gan.*"):
        nfk.NFK("gan").fit(d / "disc.pt", x)  # no generator, estimator auto → true
    with pytest.raises(RuntimeError, match="not fitted"):
        nfk.NFK("classifier").transform(x)


def test_bad_arrays(d):
    x = np.load(d / "x32.npy")
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError) as e:
        nfk.fisher_diag(d / "cnn.pt", x, kind="classifier")
    assert str(e.value) == "nfk: inputs: data holds 1 NaN and 0 Inf values (first at flat index 0)"
    with pytest.raises(TypeError, match="unsupported array dtype complex"):
        nfk.fisher_diag(d / "cnn.pt", x.astype(np.complex64), kind="classifier")
    with pytest.raises(ValueError, match="expected an array"):
        nfk.fisher_diag(d / "cnn.pt", np.float32(1), kind="classifier")


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

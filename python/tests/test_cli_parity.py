"""The Python bindings against the `nfk` CLI: the same fit/transform/fisher/distance calls with
the same arguments must give exactly the same numbers (np.array_equal); MNIST against its IDX
files.
"""
import json
import os

import numpy as np
import pytest
import torch

import nfk
from support import CNN, GAN, N, Cnn, cli, cli_flags, nfk_options


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

    m = nfk.NFK(str(path), model["kind"], **nfk_options(model, d, opts))
    emb = m.fit_transform(np.load(d / data))
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
    # The randomized methods stop at --tol: at most power_iters iterations, each one fused
    # V^T V pass or two passes, plus the first and last passes.
    if m.method_ in ("exact", "sketch"):
        expected = {"exact": 0, "sketch": 2}[m.method_]
    else:
        assert 1 <= prof["iterations"] <= m.power_iters, prof
        expected = prof["products"]
        assert expected <= 2 * prof["iterations"] + 2, prof
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
    base = nfk.NFK(str(d / "cnn.pt"), "classifier", rank=4, seed=1).fit(x)
    cnn = torch.jit.load(str(d / "cnn.pt"))
    for model, data in [(d / "cnn.pt", str(d / "x32.npy")), (cnn, torch.from_numpy(x)),
                        (str(d / "cnn.pt"), x[:, :, ::1, :].copy())]:
        m = nfk.NFK(model, "classifier", rank=4, seed=1).fit(data)
        assert np.array_equal(m.singular_values_, base.singular_values_)
        assert np.array_equal(m.transform(torch.from_numpy(x[:5])), base.transform(x[:5]))
    # An (unscripted) nn.Module with the same weights is scripted first.
    eager = Cnn()
    eager.load_state_dict({k: v for k, v in cnn.state_dict().items()})
    m = nfk.NFK(eager, "classifier", rank=4, seed=1).fit(x)
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
    m = nfk.NFK(d / "cnn.pt", "classifier", rank=4, seed=9).fit(np.load(d / "x32.npy"))
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
    m = nfk.NFK(d / "mlp.pt", "classifier", rank=3)
    assert np.array_equal(m.fit_transform("mnist:test[:16]"),
                          np.load(d / "mlp_emb.npy"))
    assert m.projector_.data_source == "mnist:test[:16]"

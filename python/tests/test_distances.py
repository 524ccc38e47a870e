"""Per-example gradients, Fisher vectors and Fisher distances against an independent functorch
float64 computation (vmap(grad) per-example gradients; V, its distances and class means by hand).
"""
import numpy as np
import pytest
import torch

import nfk
from support import Cnn
from test_against_functorch import _eager, _functorch_jacobian


@pytest.fixture(scope="module")
def exact(d):
    """An exact float64 fit (empirical Fisher) and the functorch z and I of its data."""
    x = np.load(d / "x64.npy")
    net = _eager(Cnn, d / "cnn.pt")
    j = _functorch_jacobian("classifier", net, x)
    z = j.mean(0)
    fisher = ((j - z) ** 2).mean(0)
    fisher = fisher.clamp_min(1e-8 * fisher.mean())
    m = nfk.NFK(str(d / "cnn.pt"), "classifier", rank=4, method="exact", dtype="float64",
                estimator="empirical", verbose=0).fit(x)
    return m, net, z, fisher


def test_per_example_gradients_match_functorch(d):
    x = np.load(d / "x64.npy")[:10]
    j_ref = _functorch_jacobian("classifier", _eager(Cnn, d / "cnn.pt"), x)
    j = nfk.per_example_gradients(str(d / "cnn.pt"), x, "classifier", dtype="float64",
                                  batch_size=4)
    assert j.shape == tuple(j_ref.shape)
    np.testing.assert_allclose(j, j_ref.numpy(), rtol=1e-10, atol=1e-12 * j_ref.abs().max())
    jt = nfk.per_example_gradients(str(d / "cnn.pt"), torch.from_numpy(x), "classifier",
                                   dtype="float64")
    assert isinstance(jt, torch.Tensor) and np.array_equal(jt.numpy(), j)


def test_fisher_vectors_and_distances_match_functorch(d, exact):
    m, net, z, fisher = exact
    a, b = np.load(d / "y32.npy").astype(np.float64)[:6], np.load(d / "x64.npy")[:5]
    v_a = (_functorch_jacobian("classifier", net, a) - z) / fisher.sqrt()
    v_b = (_functorch_jacobian("classifier", net, b) - z) / fisher.sqrt()
    scale = v_a.abs().max().item()
    v = nfk.fisher_vectors(m, a)
    np.testing.assert_allclose(v, v_a.numpy(), rtol=1e-9, atol=1e-11 * scale)
    # e(x) = P^T V_x: the Fisher vectors through the components are the embedding.
    e = m.transform(a)
    np.testing.assert_allclose(v @ m.components_.T, e, atol=1e-10 * np.abs(e).max())
    dist = nfk.pairwise_distances(m, a, b)
    ref = torch.cdist(v_a, v_b).numpy()
    np.testing.assert_allclose(dist, ref, rtol=1e-9)
    np.testing.assert_allclose(np.diag(nfk.pairwise_distances(m, a)), 0, atol=1e-9 * ref.max())


def test_class_distances_match_functorch(d, exact):
    m, net, z, fisher = exact
    x = np.load(d / "x64.npy")[:24]
    y = np.arange(24) % 3
    y[y == 1] = 3  # class 1 absent: NaN row and column
    v = (_functorch_jacobian("classifier", net, x) - z) / fisher.sqrt()
    means = {c: v[torch.from_numpy(y == c)].mean(0) for c in (0, 2, 3)}
    dist = nfk.class_distances(m, x, y)
    assert dist.shape == (4, 4) and np.all(np.isnan(dist[1])) and np.all(np.isnan(dist[:, 1]))
    for a in (0, 2, 3):
        for b in (0, 2, 3):
            ref = (means[a] - means[b]).norm().item()
            np.testing.assert_allclose(dist[a, b], ref, rtol=1e-9, atol=1e-12)
    with pytest.raises(TypeError, match="integer class labels"):
        nfk.class_distances(m, x, y.astype(float))
    with pytest.raises(ValueError, match=r"\[N\] = \[24\]"):
        nfk.class_distances(m, x, y[:5])


def test_fisher_stats_floor(d):
    """n_floored counts the parameters no example moves (a dead unit); they get the floor."""
    dead = Cnn()
    with torch.no_grad():
        dead.fc1.weight[3] = 0
        dead.fc1.bias[3] = -50  # unit 3 of fc1: tanh(-50) = -1 flat, no gradient reaches it
    s = nfk.fisher_stats(torch.jit.script(dead.eval()), np.load(d / "x32.npy"),
                         kind="classifier", estimator="empirical", verbose=0)
    assert s.n_floored >= 64  # fc1's weights of unit 3
    assert s.floor_value == pytest.approx(1e-8 * s.fisher_diag.mean(), rel=1e-3)
    assert s.reference == "data" and s.estimator == "empirical"

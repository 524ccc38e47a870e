"""nfk.fisher (the classifier's Fisher of p(y|x)) against an independent PyTorch implementation:
every class enumerated with autograd in float64, dense F, explicit K-FAC factors from hooks."""
import numpy as np
import pytest
import torch

import nfk


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = torch.nn.Linear(6, 5), torch.nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(3)
    net = Mlp().double().eval()
    x = torch.randn(9, 6, dtype=torch.float64)
    y = torch.randint(0, 3, (9,))
    return net, x, y


def _grads(net, x):
    """g_y(x_i) [N, C, P] and p [N, C] by autograd, one example and class at a time."""
    params = list(net.parameters())
    rows, probs = [], []
    for xi in x:
        logp = torch.log_softmax(net(xi.unsqueeze(0)), 1)[0]
        rows.append(torch.stack([torch.cat([g.reshape(-1) for g in
                                            torch.autograd.grad(logp[c], params,
                                                                retain_graph=True)])
                                 for c in range(logp.shape[0])]))
        probs.append(logp.exp().detach())
    return torch.stack(rows), torch.stack(probs)


def _dense(net, x, y, estimator):
    g, p = _grads(net, x)
    if estimator == "true":
        w = (g * p.sqrt().unsqueeze(2)).reshape(-1, g.shape[2])
    else:
        w = g[torch.arange(len(y)), y]
    return w.T @ w / len(x)


OPTS = dict(dtype="float64", batch_size=4, verbose=0)


@pytest.mark.parametrize("estimator", ["true", "empirical"])
def test_diag_and_fvp_match_dense_autograd(setup, estimator):
    net, x, y = setup
    f = _dense(net, x, y, estimator)
    diag = nfk.fisher(net, x, y, estimator=estimator, **OPTS)
    assert isinstance(diag, torch.Tensor) and diag.dtype == torch.float64  # torch in, torch out
    torch.testing.assert_close(diag, f.diagonal(), rtol=1e-10, atol=1e-14)
    v = torch.randn(f.shape[0], 2, dtype=torch.float64)
    fv = nfk.fisher_vector_product(net, x, v, y, estimator=estimator, **OPTS)
    torch.testing.assert_close(fv, f @ v, rtol=1e-10, atol=1e-14)
    as_numpy = nfk.fisher(net, x.numpy(), y.numpy(), estimator=estimator, **OPTS)
    assert isinstance(as_numpy, np.ndarray)                              # NumPy in, NumPy out
    np.testing.assert_allclose(as_numpy, diag.numpy(), rtol=1e-12)


def test_batched_is_the_squared_mean_gradient(setup):
    net, x, y = setup
    params, total = list(net.parameters()), 0
    for s in range(0, len(x), 4):
        loss = torch.nn.functional.cross_entropy(net(x[s:s + 4]), y[s:s + 4])
        total = total + torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]) ** 2
    batched = nfk.fisher(net, x, y, estimator="batched", **OPTS)
    torch.testing.assert_close(batched, total / 3, rtol=1e-10, atol=1e-15)


def test_capacity_matches_dense_eigh(setup):
    net, x, y = setup
    f = _dense(net, x, y, "true")
    eig = torch.linalg.eigvalsh(f).flip(0)[:3]
    cap = nfk.fisher_capacity(net, x, top_k=3, **OPTS)
    assert cap.trace == pytest.approx(f.trace().item(), rel=1e-10)
    torch.testing.assert_close(cap.top_eigenvalues, eig, rtol=1e-8, atol=1e-12)
    assert 1 <= cap.iterations <= 6 and cap.estimated_error is not None


def test_capacity_tolerance_and_cap():
    """tol=0 makes every one of power_iters iterations; a loose tol stops sooner, with an
    estimate at most tol and eigenvalues within about 2 tol of the dense ones. A wider net and
    more examples than `setup`, so that 13 columns a block do not fill the Fisher rows' space."""
    torch.manual_seed(5)
    net = torch.nn.Sequential(torch.nn.Linear(6, 20), torch.nn.Tanh(),
                              torch.nn.Linear(20, 3)).double().eval()
    x = torch.randn(60, 6, dtype=torch.float64)
    eig = torch.linalg.eigvalsh(_dense(net, x, None, "true")).flip(0)[:3]
    full = nfk.fisher_capacity(net, x, top_k=3, power_iters=4, tol=0, **OPTS)
    assert full.iterations == 4
    loose = nfk.fisher_capacity(net, x, top_k=3, power_iters=30, tol=1e-3, **OPTS)
    assert loose.iterations < 13 and loose.estimated_error <= 1e-3  # 13 blocks fill 180 rows
    assert ((loose.top_eigenvalues - eig).abs() / eig).max() <= 2.1e-3
    tight = nfk.fisher_capacity(net, x, top_k=3, power_iters=30, tol=1e-8, **OPTS)
    assert tight.iterations >= loose.iterations
    torch.testing.assert_close(tight.top_eigenvalues, eig, rtol=2e-8, atol=0)
    with pytest.raises(ValueError, match="tol"):
        nfk.fisher_capacity(net, x, top_k=3, tol=1.5, **OPTS)


def test_kfac_is_exact_for_one_example(setup):
    """With one example the layer input does not depend on y, so each Linear block of the true
    Fisher is exactly A (x) G: KFAC.mv equals the dense block product, and inverse_mv inverts
    mv + damping."""
    net, x, _ = setup
    x1 = x[:1]
    f = _dense(net, x1, None, "true")
    k = nfk.fisher(net, x1, form="kfac", **OPTS)
    assert isinstance(k, nfk.KFAC) and k.n_params == f.shape[0]
    assert [layer["name"] for layer in k.layers] == ["layer00.linear", "layer01.linear"]
    # fc1 (weight then bias) spans the first 35 coordinates; a vector inside that block.
    v = torch.zeros(f.shape[0], dtype=torch.float64)
    v[:35] = torch.randn(35, dtype=torch.float64)
    block = torch.zeros_like(f)
    block[:35, :35] = f[:35, :35]
    block[35:, 35:] = f[35:, 35:]
    torch.testing.assert_close(k.mv(v), block @ v, rtol=1e-9, atol=1e-13)
    back = k.inverse_mv(k.mv(v) + 0.1 * v, damping=0.1)
    torch.testing.assert_close(back, v, rtol=1e-9, atol=1e-12)


def test_labels_and_options_are_checked(setup):
    net, x, y = setup
    with pytest.raises(ValueError, match="needs labels"):
        nfk.fisher(net, x, estimator="empirical", **OPTS)
    with pytest.raises(ValueError, match="one per input"):
        nfk.fisher(net, x, y[:3], estimator="empirical", **OPTS)
    with pytest.raises(TypeError, match="integer class labels"):
        nfk.fisher(net, x, y.double(), estimator="empirical", **OPTS)
    with pytest.raises(ValueError, match="estimator"):
        nfk.fisher(net, x, estimator="exact", **OPTS)
    with pytest.raises(ValueError, match="class indices"):
        nfk.fisher(net, x, y + 5, estimator="empirical", **OPTS)

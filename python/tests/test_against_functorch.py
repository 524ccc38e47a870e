"""The Python bindings against an independent implementation: z, I, the Fisher vectors V and
their SVD from functorch per-example gradients (vmap(grad)) in float64.
"""
import numpy as np
import pytest
import torch

import nfk
from support import CNN, GAN, Cnn, Disc, nfk_options


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
    m = nfk.NFK(str(d / model["model"]), model["kind"], **nfk_options(model, d, opts))
    emb = m.fit_transform(x)
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
    m = nfk.NFK(str(d / "cnn.pt"), "classifier", rank=4, method="per-example", dtype="float64",
                estimator="empirical", seed=1).fit(x)
    np.testing.assert_allclose(m.singular_values_, s_ref[:4].numpy(), rtol=1e-6)
    # explained-variance ratio: sigma^2 / ||V||_F^2 with V resident (exact total variance).
    np.testing.assert_allclose(m.explained_variance_ratio_,
                               (s_ref[:4] ** 2 / (v ** 2).sum()).numpy(), rtol=1e-6)

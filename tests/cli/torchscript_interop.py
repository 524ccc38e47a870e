"""TorchScript interop check, run by tests/cli/torchscript_interop.sh with Debian's python3-torch.

`make DIR`: writes TorchScript models written by PyTorch (a small CNN classifier, a GAN
discriminator and generator) and float64 data to DIR, plus the exact top-16 NFK singular values
computed here, independently of nfk (explicit per-example gradients, Gram eigendecomposition).
`check DIR`: compares nfk's `spectrum --json` outputs and embeddings with those references.
"""
import json
import sys

import numpy as np
import torch

RANK = 16
N = 80


class Cnn(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.fc1 = torch.nn.Linear(4 * 4 * 4, 16)
        self.fc2 = torch.nn.Linear(16, 5)

    def forward(self, x):
        h = torch.nn.functional.max_pool2d(torch.tanh(self.conv(x)), 2)
        return self.fc2(torch.tanh(self.fc1(h.flatten(1))))


class NormCnn(torch.nn.Module):
    """Every op the TorchScript layer tape recognises: conv (grouped, strided), eval batch norm,
    group norm, layer norm, linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.conv2 = torch.nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2)
        self.gn = torch.nn.GroupNorm(3, 6)
        self.fc1 = torch.nn.Linear(6 * 4 * 4, 12)
        self.ln = torch.nn.LayerNorm(12)
        self.fc2 = torch.nn.Linear(12, 5)
        with torch.no_grad():  # non-trivial running statistics and affine parameters
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 1.5)
            for norm in (self.bn, self.gn, self.ln):
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.uniform_(-0.2, 0.2)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv1(x)))
        h = torch.tanh(self.gn(self.conv2(h)))
        return self.fc2(torch.tanh(self.ln(self.fc1(h.flatten(1)))))


class Disc(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 3, 4, stride=2, padding=1)
        self.fc = torch.nn.Linear(3 * 4 * 4, 1)

    def forward(self, x):
        return self.fc(torch.nn.functional.leaky_relu(self.conv(x), 0.2).flatten(1))


class Gen(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(4, 64)

    def forward(self, h):
        return torch.sigmoid(self.fc(h)).view(h.size(0), 1, 8, 8)


def score_fn(kind, net):
    if kind == "classifier":
        return lambda x: torch.logsumexp(net(x), dim=1)
    return lambda x: net(x).reshape(-1)


def jacobian(score, net, x):
    params = [p for p in net.parameters()]
    rows = []
    for i in range(x.shape[0]):
        g = torch.autograd.grad(score(x[i:i + 1]).sum(), params)
        rows.append(torch.cat([t.reshape(-1) for t in g]))
    return torch.stack(rows)


def exact_sigma(kind, net, x, ref):
    net = net.double()
    score = score_fn(kind, net)
    j_ref = jacobian(score, net, ref)
    z = j_ref.mean(0)
    fisher = ((j_ref - z) ** 2).mean(0)
    fisher = fisher.clamp_min(1e-8 * fisher.mean())  # nfk's default floor
    v = (jacobian(score, net, x) - z) / fisher.sqrt()
    return torch.linalg.svdvals(v)[:RANK].tolist()


def make(d):
    torch.manual_seed(0)
    x = torch.rand(N, 1, 8, 8, dtype=torch.float64)
    np.save(f"{d}/x.npy", x.numpy())
    cnn, disc, gen = Cnn(), Disc(), Gen()
    norm_cnn = NormCnn().eval()
    torch.jit.script(norm_cnn).save(f"{d}/norm_scripted.pt")
    torch.jit.trace(norm_cnn, x[:2].float()).save(f"{d}/norm_traced.pt")
    torch.jit.script(cnn).save(f"{d}/cnn.pt")
    torch.jit.script(disc).save(f"{d}/disc.pt")
    torch.jit.script(gen).save(f"{d}/gen.pt")
    ref = {"classifier": exact_sigma("classifier", cnn, x, x),
           "norm_classifier": exact_sigma("classifier", norm_cnn, x, x)}
    # The GAN's reference (generator samples) is drawn by nfk; here the empirical estimator
    # (data as reference) gives an nfk-independent check of the same operator.
    ref["gan_empirical"] = exact_sigma("gan", disc, x, x)
    json.dump(ref, open(f"{d}/reference.json", "w"))


def rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b) / np.abs(b)))


def check(d):
    ref = json.load(open(f"{d}/reference.json"))
    failed = False
    for name, key in [("cnn_exact", "classifier"), ("cnn_matrix_free", "classifier"),
                      ("cnn_per_example", "classifier"), ("gan_exact", "gan_empirical"),
                      ("gan_matrix_free", "gan_empirical"),
                      ("norm_scripted_per_example", "norm_classifier"),
                      ("norm_traced_per_example", "norm_classifier")]:
        spec = json.load(open(f"{d}/{name}.json"))
        err = rel(spec["singular_values"], ref[key])
        ok = err <= 1e-6 and spec["rank"] == RANK and spec["dtype"] == "float64" \
            and spec["n_examples"] == N
        print(f"{'ok' if ok else 'FAIL'}: {name}: top-{RANK} sigma max rel err {err:.2e} "
              f"vs python exact ({spec['method']})")
        failed |= not ok
    for name in ["cnn_exact", "cnn_matrix_free", "gan_matrix_free"]:
        e = np.load(f"{d}/{name}_transform.npy")
        e_train = np.load(f"{d}/{name}_train.npy")
        err = float(np.abs(e - e_train).max() / np.abs(e_train).max())
        ok = err <= 1e-6 and e.shape == (N, RANK)
        print(f"{'ok' if ok else 'FAIL'}: {name}: transform(train) vs Phi sigma rel err {err:.2e}")
        failed |= not ok
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    {"make": make, "check": check}[sys.argv[1]](sys.argv[2])

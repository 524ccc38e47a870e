#!/usr/bin/python3
"""Reference: the NFK paper's Alg. 4 (matrix-free randomized SVD of V by JVP/VJP) in PyTorch with
functorch (torch 1.13; torch.func in 2.x), on LeNet-5 with the classifier free-energy score
s(x) = logsumexp f(x), empirical Fisher (z, I from the data). Prints one JSON object.

Usage: functorch_alg4.py --n 1024 [--rank 32 --oversample 10 --power-iters 10 --batch-size 256]
                        [--device cuda]
"seconds" is the fit alone (data on the device, CUDA synchronised), as nfk's profile total_s.
"""
import argparse
import gzip
import json
import os
import resource
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
try:  # torch 2.x
    from torch.func import functional_call, grad, jvp, vjp, vmap

    def make_functional(module):
        names = [name for name, _ in module.named_parameters()]

        def fmodel(ps, x):
            return functional_call(module, dict(zip(names, ps)), (x,))

        return fmodel, tuple(p for _, p in module.named_parameters())
except ImportError:  # torch 1.13 (Debian's python3-torch): functorch
    from functorch import jvp, make_functional, vjp, vmap, grad


class LeNet5(nn.Module):  # same architecture as nfk's zoo lenet5 (61,706 parameters)
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.relu(self.fc1(h.flatten(1)))
        return self.fc3(F.relu(self.fc2(h)))


def mnist(n, root):
    path = os.path.join(root, "mnist", "train-images-idx3-ubyte")
    opener = open
    if not os.path.exists(path):
        path, opener = path + ".gz", gzip.open
    with opener(path, "rb") as f:
        data = np.frombuffer(f.read(), dtype=np.uint8, offset=16)
    return torch.from_numpy(data[: n * 784].astype(np.float32) / 255).view(n, 1, 28, 28)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1024)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--oversample", type=int, default=10)
    ap.add_argument("--power-iters", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--data-root", default=os.environ.get(
        "NFK_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", "data")))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    dev = torch.device(a.device)
    fmodel, params = make_functional(LeNet5().eval().to(dev))
    params = tuple(p.detach() for p in params)
    shapes = [p.shape for p in params]
    sizes = [p.numel() for p in params]
    n_params = sum(sizes)
    x_all = mnist(a.n, a.data_root).to(dev)
    batches = list(torch.split(x_all, a.batch_size))

    def score(ps, x):  # [B]
        return torch.logsumexp(fmodel(ps, x), dim=1)

    def unflatten(v):
        return tuple(t.view(s) for t, s in zip(torch.split(v, sizes), shapes))

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    # z and I from the data: per-example gradients by vmap(grad) (one pass).
    per_ex = vmap(grad(lambda ps, x: score(ps, x.unsqueeze(0)).squeeze(0)), in_dims=(None, 0))
    s1 = torch.zeros(n_params, device=dev)
    s2 = torch.zeros(n_params, device=dev)
    for xb in batches:
        g = torch.cat([t.reshape(xb.shape[0], -1) for t in per_ex(params, xb)], dim=1)
        s1 += g.sum(0)
        s2 += (g * g).sum(0)
    z = s1 / a.n
    fisher = (s2 / a.n - z * z).clamp_min(0)
    fisher = fisher.clamp_min(1e-8 * fisher.mean())
    inv_sqrt = fisher.rsqrt()
    sync()
    t_stats = time.perf_counter() - t0

    def apply(q):  # V Q: [P, u] → [N, u], vmapped JVPs over the u tangents
        t = q * inv_sqrt[:, None]
        offset = z @ t
        out = []
        for xb in batches:
            f = lambda tv: jvp(lambda ps: score(ps, xb), (params,), (unflatten(tv),))[1]
            out.append(vmap(f)(t.T).T)  # [B, u]
        return torch.cat(out) - offset

    def apply_t(m):  # Vᵀ M: [N, u] → [P, u], vmapped VJPs over the u cotangents
        acc = torch.zeros(n_params, m.shape[1], device=dev)
        start = 0
        for xb in batches:
            _, pull = vjp(lambda ps: score(ps, xb), params)
            mb = m[start:start + xb.shape[0]]
            g = vmap(lambda c: torch.cat([t.reshape(-1) for t in pull(c)[0]]))(mb.T)  # [u, P]
            acc += g.T
            start += xb.shape[0]
        return (acc - z[:, None] * m.sum(0)[None, :]) * inv_sqrt[:, None]

    u = a.rank + a.oversample
    q = torch.linalg.qr(torch.randn(n_params, u, device=dev))[0]
    y = apply(q)
    for _ in range(a.power_iters):
        q = torch.linalg.qr(apply_t(torch.linalg.qr(y)[0]))[0]
        y = apply(q)
    qy = torch.linalg.qr(y)[0]
    b = apply_t(qy).T  # [u, P] = Qyᵀ V
    sigma = torch.linalg.svdvals(b)[: a.rank].cpu()
    sync()
    total = time.perf_counter() - t0
    print(json.dumps({
        "impl": "functorch-alg4", "net": "lenet5", "device": str(dev), "torch": torch.__version__, "n": a.n, "n_params": n_params,
        "rank": a.rank, "power_iters": a.power_iters, "dtype": "float32",
        "threads": torch.get_num_threads(), "seconds": total, "stats_seconds": t_stats,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_device_mib": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
        "singular_values": sigma.tolist()}))


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Reference: what a PyTorch user writes for the NFK's low-rank SVD (issue 17): torch.func /
functorch per-sample gradients (vmap(grad)) of the model's score (classifier: the free energy
s(x) = logsumexp f(x); score kind: forward(x)), empirical Fisher (z, I from the data, I floored
at 1e-8·mean), and the randomized SVD of V = (J − 1zᵀ) I^{-1/2} by torch GEMMs (Halko et al.
Alg. 4.4: VᵀΩ, L power iterations Q ← qr(Vᵀ qr(V Q)), B = V Q, svd(B)). "resident" keeps V in
memory; "streamed" recomputes V's blocks for every product (memory flat in N). Prints one JSON
object.

Usage: pytorch_user.py --model NET_ts.pt --net lenet5|dcgan-d|wrn-40-2 --n 4096
                       --mode resident|streamed [--rank 32 --oversample 32 --power-iters 10
                       --batch-size 256]
       pytorch_user.py --make-model NET_ts.pt --net NET [--train-images 10000]   # the net,
       seeded (LeNet-5 trained one epoch on the first MNIST training images, the others as
       initialised), saved as TorchScript: nfk fits the same file
Data: MNIST training images [:N] for LeNet-5; for the 3×32×32 nets the fit bench's uniform noise
(bench/user_nets.py `noise`, seed 0), which nfk reads from `--save-noise FILE.npy`.
"seconds" is the fit alone (data in memory), as nfk's profile total_s. "trace" holds, after each
power iteration i, the σ of B = V Q_i and the seconds so far: the run a user would have made with
L = i (its final product is that B), for the time to reach an accuracy.
"""
import argparse
import json
import os
import time

import torch
import torch.nn.functional as F

from functorch_alg4 import mnist  # MNIST reader
from user_nets import NETS, noise  # the bench's nets, as nfk's zoo defines them

try:  # torch 2.x
    from torch.func import functional_call, grad, vmap
except ImportError:  # torch 1.13: functorch, and the stateless functional_call
    from functorch import grad, vmap
    from torch.nn.utils.stateless import functional_call

DATA = os.environ.get("NFK_DATA_DIR", os.path.join(os.path.dirname(__file__), "..", "data"))


def make_model(path, net_name, train_images, seed=0):
    torch.manual_seed(seed)
    net = NETS[net_name][0]()
    if net_name != "lenet5":  # no labelled data for the 3×32×32 nets: as initialised
        torch.jit.script(net.eval()).save(path)
        return
    x = mnist(train_images, DATA)
    y = labels(train_images)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    perm = torch.randperm(train_images)
    for s in range(0, train_images, 64):  # one epoch
        idx = perm[s:s + 64]
        opt.zero_grad()
        F.cross_entropy(net(x[idx]), y[idx]).backward()
        opt.step()
    torch.jit.script(net.eval()).save(path)


def labels(n):
    import gzip
    import numpy as np
    path = os.path.join(DATA, "mnist", "train-labels-idx1-ubyte")
    opener = open
    if not os.path.exists(path):
        path, opener = path + ".gz", gzip.open
    with opener(path, "rb") as f:
        data = np.frombuffer(f.read(), dtype=np.uint8, offset=8)
    return torch.from_numpy(data[:n].astype(np.int64))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--net", choices=sorted(NETS), default="lenet5")
    ap.add_argument("--make-model")
    ap.add_argument("--save-noise", help="write the noise data of --n examples here and exit")
    ap.add_argument("--train-images", type=int, default=10000)
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--mode", choices=["resident", "streamed"], default="resident")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--oversample", type=int, default=32)
    ap.add_argument("--power-iters", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count())  # as many as nfk's OpenMP uses
    if a.make_model:
        make_model(a.make_model, a.net, a.train_images)
        return
    if a.save_noise:
        noise(a.n, a.save_noise)
        return

    constructor, _, score_of, data = NETS[a.net]
    module = torch.jit.load(a.model).eval()
    net = constructor()
    net.load_state_dict(module.state_dict())
    net.eval()
    names = [name for name, _ in net.named_parameters()]
    params = {name: p.detach() for name, p in net.named_parameters()}
    buffers = dict(net.named_buffers())  # batch norm's running statistics (eval mode)
    n_params = sum(p.numel() for p in params.values())
    x_all = mnist(a.n, DATA) if data == "mnist" else noise(a.n)
    batches = list(torch.split(x_all, a.batch_size))

    def score(ps, x):  # one example → scalar
        out = functional_call(net, {**ps, **buffers}, (x.unsqueeze(0),))
        return score_of(out).squeeze(0)

    per_sample = vmap(grad(score), in_dims=(None, 0))

    def rows(xb):  # J_b [B, P]
        g = per_sample(params, xb)
        return torch.cat([g[name].reshape(xb.shape[0], -1) for name in names], dim=1)

    t0 = time.perf_counter()
    s1 = torch.zeros(n_params)
    s2 = torch.zeros(n_params)
    blocks = []
    for xb in batches:
        j = rows(xb)
        s1 += j.sum(0)
        s2 += (j * j).sum(0)
        if a.mode == "resident":
            blocks.append(j)
    z = s1 / a.n
    fisher = (s2 / a.n - z * z).clamp_min(0)
    fisher = fisher.clamp_min(1e-8 * fisher.mean())
    inv_sqrt = fisher.rsqrt()
    passes = 0
    if a.mode == "resident":
        v = (torch.cat(blocks) - z).mul_(inv_sqrt)
        del blocks

        def apply(q):
            return v @ q

        def apply_t(m):
            return v.T @ m
    else:
        def apply(q):  # V Q, V's blocks recomputed
            return torch.cat([(rows(xb) - z) @ (inv_sqrt[:, None] * q) for xb in batches])

        def apply_t(m):  # Vᵀ M
            acc = torch.zeros(n_params, m.shape[1])
            start = 0
            for xb in batches:
                acc += (rows(xb) - z).T @ m[start:start + xb.shape[0]]
                start += xb.shape[0]
            return acc * inv_sqrt[:, None]

    u = a.rank + a.oversample
    g = torch.Generator().manual_seed(a.seed)
    omega = torch.randn(a.n, u, generator=g)
    q = torch.linalg.qr(apply_t(omega))[0]
    passes += 1
    trace = []
    for i in range(a.power_iters + 1):
        b = apply(q)  # the first half of iteration i + 1, and B for a run with L = i
        passes += 1
        sigma = torch.linalg.svdvals(b)[: a.rank]
        trace.append({"iterations": i, "passes": passes,
                      "seconds": time.perf_counter() - t0, "singular_values": sigma.tolist()})
        if i == a.power_iters:
            break
        q = torch.linalg.qr(apply_t(torch.linalg.qr(b)[0]))[0]
        passes += 1
    seconds = time.perf_counter() - t0
    print(json.dumps({
        "impl": "pytorch-user", "mode": a.mode, "net": a.net, "torch": torch.__version__,
        "n": a.n, "n_params": n_params, "rank": a.rank, "oversample": a.oversample,
        "power_iters": a.power_iters, "passes": passes, "dtype": "float32",
        "threads": torch.get_num_threads(), "seconds": seconds,
        "singular_values": sigma.tolist(), "trace": trace}))


if __name__ == "__main__":
    main()

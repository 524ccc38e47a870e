#!/usr/bin/python3
"""The classifier's Fisher of p(y|x) with `nfk fisher --conditional`: estimators side by side,
the true/empirical gap along training, the batched error vs B, timings vs a PyTorch baseline.

    /usr/bin/python3 results/fisher/run.py --nfk build/nfk --work /tmp/fisher-work

Phases (each skips what its outputs already hold, so a cut-off run resumes):
  train     nfk train classifier, lenet5 and mlp, four stages (see STAGES)
  fisher    nfk fisher --conditional for every estimator, model and stage (.npy + JSON + timing)
  baseline  torch.func vmap(grad) per-example gradients on the same weights: true (every class
            enumerated), empirical and batched diagonals, timed, compared with nfk's
  report    results.json + figures in results/fisher/
"""
import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from functorch import grad, vmap  # torch 1.13: torch.func arrived in 2.0
from torch.nn.utils.stateless import functional_call

HERE = os.path.dirname(os.path.abspath(__file__))
ARCHS = ["lenet5", "mlp"]
# (name, training data, epochs): untrained; 1 epoch of the first 4000 images (63 Adam steps);
# 1 epoch of all 60000 (938 steps); 3 epochs (2814 steps, resumed from the 1-epoch checkpoint).
STAGES = [("e0", "mnist:train", 0, 0), ("p4k", "mnist:train[:4000]", 1, 63),
          ("e1", "mnist:train", 1, 938), ("e3", "mnist:train", 3, 2814)]
SEED = 0
N_EVAL = 2048  # mnist:train[:2048]: divisible by every B below
BATCHED_B = [32, 128, 512]
MC_S = [1, 10]
TOP_K = 10


def sh(cmd, **kw):
    """Runs cmd; returns (stdout, wall seconds, child CPU seconds user+sys)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return out, wall, cpu


def model_dir(work, arch, stage):
    return os.path.join(work, "models", f"{arch}-{stage}")


def phase_train(a):
    for arch in ARCHS:
        for stage, data, epochs, _ in STAGES:
            out = model_dir(a.work, arch, stage)
            if os.path.exists(os.path.join(out, "classifier.zoo")):
                continue
            if stage == "e3":  # continue the 1-epoch run from its checkpoint
                shutil.copytree(model_dir(a.work, arch, "e1"), out)
            cmd = [a.nfk, "train", "classifier", "--arch", arch, "--data", data, "--test-data",
                   "mnist:test", "--epochs", str(epochs), "--seed", str(SEED), "--out", out,
                   "--quiet"]
            print(" ".join(cmd), flush=True)
            _, wall, _ = sh(cmd)
            print(f"  {wall:.1f} s", flush=True)


def fisher_runs():
    """(tag, extra nfk flags)."""
    runs = [("true", ["--estimator", "true"]), ("empirical", ["--estimator", "empirical"])]
    runs += [(f"mc{s}", ["--estimator", "mc", "--mc-samples", str(s)]) for s in MC_S]
    runs += [(f"batched{b}", ["--estimator", "batched", "--batch-size", str(b)])
             for b in BATCHED_B]
    # B = N: one batch, so the diagonal is exactly ḡ², ḡ the mean gradient of the whole subset.
    runs += [("gbar2", ["--estimator", "batched", "--batch-size", str(N_EVAL)])]
    return runs


def phase_fisher(a):
    fdir = os.path.join(a.work, "fisher")
    os.makedirs(fdir, exist_ok=True)
    data = f"mnist:train[:{N_EVAL}]"
    # Load overhead: the same command on one example (data parsing, model load, process start).
    for arch in ARCHS:
        tag = os.path.join(fdir, f"{arch}-overhead")
        if not os.path.exists(tag + ".json"):
            cmd = [a.nfk, "fisher", "--model", os.path.join(model_dir(a.work, arch, "e0"),
                   "classifier.zoo"), "--kind", "classifier", "--conditional", "--estimator",
                   "empirical", "--data", "mnist:train[:1]", "--out", tag + ".npy", "--json",
                   "--quiet"]
            walls, cpus = [], []
            for _ in range(3):
                _, w, c = sh(cmd)
                walls.append(w)
                cpus.append(c)
            json.dump({"cmd": cmd, "wall_s": walls, "cpu_s": cpus}, open(tag + ".json", "w"))
    for stage, *_ in STAGES:
        for arch in ARCHS:
            model = os.path.join(model_dir(a.work, arch, stage), "classifier.zoo")
            runs = fisher_runs()
            if stage == "e3":  # ~200 s for LeNet-5: the trained models only
                runs.append(("truestats", ["--estimator", "true", "--stats", "--top-k",
                                           str(TOP_K)]))
            for tag, flags in runs:
                base = os.path.join(fdir, f"{arch}-{stage}-{tag}")
                if os.path.exists(base + ".json"):
                    continue
                cmd = [a.nfk, "fisher", "--model", model, "--kind", "classifier",
                       "--conditional", "--data", data, "--seed", str(SEED), "--out",
                       base + ".npy", "--json", "--quiet"] + flags
                out, wall, cpu = sh(cmd)
                j = json.loads(out)
                j.update({"cmd": cmd, "wall_s": wall, "cpu_s": cpu})
                json.dump(j, open(base + ".json", "w"), indent=1)
                print(f"{arch} {stage} {tag}: trace {j['trace']:.5g}  {wall:.1f} s wall, "
                      f"{cpu:.1f} s cpu", flush=True)


# --- the PyTorch baseline -------------------------------------------------------------------


class LeNet5(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = torch.nn.Conv2d(6, 16, 5)
        self.fc1 = torch.nn.Linear(400, 120)
        self.fc2 = torch.nn.Linear(120, 84)
        self.fc3 = torch.nn.Linear(84, 10)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = F.relu(self.fc1(h.flatten(1)))
        return self.fc3(F.relu(self.fc2(h)))


class Mlp(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList(
            [torch.nn.Linear(784, 128), torch.nn.Linear(128, 64), torch.nn.Linear(64, 10)])

    def forward(self, x):
        h = x.flatten(1)
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i + 1 < len(self.layers):
                h = torch.tanh(h)
        return h


def load_mnist_train(n):
    root = os.path.join(HERE, "..", "..", "data", "mnist")
    with open(os.path.join(root, "train-images-idx3-ubyte"), "rb") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16)[: n * 784].reshape(n, 1, 28, 28)
    with open(os.path.join(root, "train-labels-idx1-ubyte"), "rb") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)[:n]
    return torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(y.astype(np.int64))


def load_torch_model(path, arch):
    """nfk's zoo archive loads with torch.jit.load as a module of parameters (no methods)."""
    scripted = torch.jit.load(path)
    net = LeNet5() if arch == "lenet5" else Mlp()
    net.load_state_dict({k: v for k, v in scripted.named_parameters()})
    return net.eval()


def per_example_grads(net, params, x, y, chunk=256):
    """∇θ log p(y_i|x_i) for every i, flattened in parameter order: [N, P] (chunks of `chunk`)."""
    def logp(p, xi, yi):
        logits = functional_call(net, p, (xi.unsqueeze(0),))
        return torch.log_softmax(logits, 1)[0].gather(0, yi.unsqueeze(0)).squeeze(0)
    g = vmap(grad(logp), in_dims=(None, 0, 0))
    rows = []
    for s in range(0, x.shape[0], chunk):
        gs = g(params, x[s:s + chunk], y[s:s + chunk])
        rows.append(torch.cat([gs[k].flatten(1) for k in params], 1))
    return torch.cat(rows)


def baseline_true(net, params, x):
    """Σ_c p(c|x) g_c² enumerated over classes, by per-example vmap(grad)."""
    with torch.no_grad():
        prob = torch.softmax(net(x), 1)
    d = None
    for c in range(prob.shape[1]):
        gc = per_example_grads(net, params, x, torch.full((x.shape[0],), c, dtype=torch.long))
        term = (prob[:, c:c + 1] * gc.square()).sum(0)
        d = term if d is None else d + term
    return d / x.shape[0]


def baseline_empirical(net, params, x, y):
    return per_example_grads(net, params, x, y).square().mean(0)


def baseline_batched(net, params, x, y, b):
    """(1/n_B) Σ_batches ḡ_b², ḡ_b = ∇ mean CE of the batch (contiguous batches)."""
    params = {k: v.detach().requires_grad_() for k, v in params.items()}
    out = None
    for s in range(0, x.shape[0], b):
        loss = F.cross_entropy(functional_call(net, params, (x[s:s + b],)), y[s:s + b])
        gs = torch.autograd.grad(loss, list(params.values()))
        sq = torch.cat([t.flatten() for t in gs]).square()
        out = sq if out is None else out + sq
    return out / ((x.shape[0] + b - 1) // b)


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    r = fn()
    return r, time.perf_counter() - t0, time.process_time() - c0


def phase_baseline(a):
    torch.manual_seed(SEED)
    bdir = os.path.join(a.work, "baseline")
    os.makedirs(bdir, exist_ok=True)
    x, y = load_mnist_train(N_EVAL)
    for stage, *_ in STAGES:
        for arch in ARCHS:
            base = os.path.join(bdir, f"{arch}-{stage}")
            if os.path.exists(base + ".json"):
                continue
            net = load_torch_model(os.path.join(model_dir(a.work, arch, stage), "classifier.zoo"),
                                   arch)
            params = {k: v.detach() for k, v in net.named_parameters()}
            with torch.no_grad():
                logits = net(x)
            acc = (logits.argmax(1) == y).double().mean().item()
            loss = F.cross_entropy(logits, y).item()
            d_true, w_true, c_true = timed(lambda: baseline_true(net, params, x))
            d_emp, w_emp, c_emp = timed(lambda: baseline_empirical(net, params, x, y))
            d_b = {b: baseline_batched(net, params, x, y, b) for b in BATCHED_B + [N_EVAL]}
            np.save(base + "-true.npy", d_true.numpy())
            np.save(base + "-empirical.npy", d_emp.numpy())
            for b, d in d_b.items():
                np.save(base + f"-batched{b}.npy", d.numpy())
            j = {"train_subset_accuracy": acc, "train_subset_loss": loss,
                 "true": {"wall_s": w_true, "cpu_s": c_true},
                 "empirical": {"wall_s": w_emp, "cpu_s": c_emp},
                 "torch_threads": torch.get_num_threads(), "torch": torch.__version__}
            json.dump(j, open(base + ".json", "w"), indent=1)
            print(f"baseline {arch} {stage}: acc {acc:.4f}  true {w_true:.1f} s, "
                  f"empirical {w_emp:.1f} s", flush=True)


def phase_batchnoise(a, n_perm=100):
    """The batched estimator over random partitions of the N examples into batches of B
    (per-example gradients G [N, P], float32): mean and spread of its trace, and the relative
    diagonal difference of one partition from the expectation — the noise level against which
    nfk's one contiguous partition is judged."""
    x, y = load_mnist_train(N_EVAL)
    gen = torch.Generator().manual_seed(SEED)
    out = {}
    for arch in ARCHS:
        for stage in ("e0", "e3"):
            net = load_torch_model(os.path.join(model_dir(a.work, arch, stage), "classifier.zoo"),
                                   arch)
            params = {k: v.detach() for k, v in net.named_parameters()}
            g = -per_example_grads(net, params, x, y)  # ∇ CE
            emp, g2 = g.square().mean(0).double(), g.mean(0).double().square()
            r = {}
            for b in BATCHED_B:
                fpc = g2 + (N_EVAL - b) / (b * (N_EVAL - 1)) * (emp - g2)
                traces, rels = [], []
                for _ in range(n_perm):
                    perm = torch.randperm(N_EVAL, generator=gen)
                    d = g[perm].view(N_EVAL // b, b, -1).mean(1).double().square().mean(0)
                    traces.append(d.sum().item())
                    rels.append((torch.linalg.norm(d - fpc) / torch.linalg.norm(fpc)).item())
                r[str(b)] = {"trace_mean": float(np.mean(traces)), "trace_std": float(np.std(traces)),
                             "rel_diff_fpc_median": float(np.median(rels)),
                             "rel_diff_fpc_p90": float(np.percentile(rels, 90))}
            out[f"{arch}-{stage}"] = r
            print(arch, stage, r, flush=True)
    json.dump(out, open(os.path.join(a.work, "batchnoise.json"), "w"), indent=1)


def phase_eigcheck(a):
    """Top eigenvalues of the trained models' true Fisher on mnist:train[:256]: nfk --stats
    against the dense eigendecomposition of W Wᵀ, W the rows √(p_c/N) g_c (float64)."""
    n = 256
    x, _ = load_mnist_train(n)
    out = {}
    for arch in ARCHS:
        model = os.path.join(model_dir(a.work, arch, "e3"), "classifier.zoo")
        cmd = [a.nfk, "fisher", "--model", model, "--kind", "classifier", "--conditional",
               "--data", f"mnist:train[:{n}]", "--seed", str(SEED), "--estimator", "true",
               "--stats", "--top-k", str(TOP_K), "--out",
               os.path.join(a.work, f"eig-{arch}.npy"), "--json", "--quiet"]
        j = json.loads(sh(cmd)[0])
        net = load_torch_model(model, arch).double()
        params = {k: v.detach() for k, v in net.named_parameters()}
        xd = x.double()
        with torch.no_grad():
            prob = torch.softmax(net(xd), 1)
        rows = [per_example_grads(net, params, xd, torch.full((n,), c, dtype=torch.long))
                * (prob[:, c:c + 1] / n).sqrt() for c in range(prob.shape[1])]
        w = torch.cat(rows)
        lam = torch.linalg.eigvalsh(w @ w.T).flip(0)[:TOP_K].tolist()
        nfk_lam = j["stats"]["top_eigenvalues"]
        out[arch] = {"nfk": nfk_lam, "dense": lam,
                     "max_rel_diff": max(abs(p - q) / q for p, q in zip(nfk_lam, lam)),
                     "cmd": cmd}
        print(arch, out[arch]["max_rel_diff"], flush=True)
    json.dump(out, open(os.path.join(a.work, "eigcheck.json"), "w"), indent=1)


# --- the report -------------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--nfk", default=os.path.join(HERE, "..", "..", "build", "nfk"))
    p.add_argument("--work", default="/tmp/fisher-work")
    p.add_argument("--phases", default="train,fisher,baseline,report")
    a = p.parse_args()
    a.nfk = os.path.abspath(a.nfk)
    import report  # the report phase and its figures (report.py imports this file's settings)
    for ph in a.phases.split(","):
        print(f"== {ph}", flush=True)
        phase = globals().get(f"phase_{ph}") or getattr(report, f"phase_{ph}")
        phase(a)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""K-FAC and EK-FAC forms of the classifier's Fisher (`nfk fisher --conditional --form kfac|ekfac`)
against a PyTorch forward/backward-hook baseline on the same weights, and K-FAC's quality on the
last layer against the exact block from per-example gradients.

    /usr/bin/python3 results/fisher/kfac.py --nfk build/nfk --work /tmp/kfac-work

Phases (each skips what its outputs already hold):
  train     nfk train classifier --arch lenet5|mlp --data mnist:train --epochs 1 --seed 0
  nfk       nfk fisher --conditional --form kfac|ekfac --estimator true|empirical on
            mnist:train[:2048] (timed), and kfac|ekfac true on mnist:train[:256] (block check)
  baseline  hooks on nn.Linear/nn.Conv2d: A and G (true: C backward passes with cotangents
            √p_c (e_c − p); empirical: e_y − p), EK-FAC scalings in a second pass; timed;
            factors compared with nfk's
  block     last layer, N = 256: kron(G, A) and the EK-FAC block vs the exact true-Fisher block
            (1/N) Σ_i Σ_c p_c g_ic g_icᵀ, g_ic = ∇_M log p(c|x_i) by functorch vmap(grad)
  report    results/fisher/kfac.json
"""
import argparse
import io
import json
import os
import sys
import time
import zipfile

import numpy as np
import torch
import torch.nn.functional as F
from functorch import grad, vmap
from torch.nn.utils.stateless import functional_call

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (LeNet5, Mlp, load_mnist_train, load_torch_model, sh)

ARCHS = ["lenet5", "mlp"]
FORMS = ["kfac", "ekfac"]
ESTIMATORS = ["true", "empirical"]
SEED = 0
N_EVAL = 2048
N_BLOCK = 256
BLOCK_NS = [N_BLOCK, 1]  # N = 1: one example, one position: K-FAC is exact (a sanity check)


def model_path(work, arch):
    return os.path.join(work, "models", arch, "classifier.zoo")


def phase_train(a):
    for arch in ARCHS:
        if os.path.exists(model_path(a.work, arch)):
            continue
        cmd = [a.nfk, "train", "classifier", "--arch", arch, "--data", "mnist:train",
               "--epochs", "1", "--seed", str(SEED), "--out",
               os.path.dirname(model_path(a.work, arch)), "--quiet"]
        print(" ".join(cmd), flush=True)
        _, wall, cpu = run.sh(cmd)
        print(f"  {wall:.1f} s wall", flush=True)


def nfk_cmd(a, arch, form, est, n, out):
    return [a.nfk, "fisher", "--model", model_path(a.work, arch), "--kind", "classifier",
            "--conditional", "--form", form, "--estimator", est, "--data", f"mnist:train[:{n}]",
            "--seed", str(SEED), "--out", out, "--json", "--quiet"]


def phase_nfk(a):
    d = os.path.join(a.work, "nfk")
    os.makedirs(d, exist_ok=True)
    # fixed cost: the same command on one example (process start, MNIST parse, model load)
    for arch in ARCHS:
        base = os.path.join(d, f"{arch}-overhead")
        if not os.path.exists(base + ".json"):
            walls, cpus = [], []
            for _ in range(2):
                _, w, c = run.sh(nfk_cmd(a, arch, "kfac", "empirical", 1, base + ".npz"))
                walls.append(w)
                cpus.append(c)
            json.dump({"wall_s": walls, "cpu_s": cpus}, open(base + ".json", "w"))
    jobs = [(arch, form, est, N_EVAL) for arch in ARCHS for form in FORMS for est in ESTIMATORS]
    jobs += [(arch, form, "true", n) for arch in ARCHS for form in FORMS for n in BLOCK_NS]
    for arch, form, est, n in jobs:
        base = os.path.join(d, f"{arch}-{form}-{est}-{n}")
        if os.path.exists(base + ".json"):
            continue
        cmd = nfk_cmd(a, arch, form, est, n, base + ".npz")
        out, wall, cpu = run.sh(cmd)
        j = json.loads(out)
        j.update({"cmd": cmd, "wall_s": wall, "cpu_s": cpu})
        json.dump(j, open(base + ".json", "w"), indent=1)
        print(f"nfk {arch} {form} {est} N={n}: {wall:.2f} s wall, {cpu:.2f} s cpu", flush=True)


def load_npz(path):
    z = np.load(path)
    with zipfile.ZipFile(path) as zf:
        index = json.loads(zf.read("index.json"))
    return z, index


# --- the PyTorch baseline ---------------------------------------------------------------------


def layer_modules(net):
    return [m for m in net.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]


def unfold(inp, m):
    """F.unfold(inp, kernel, dilation, padding, stride) [B, C·kh·kw, T], computed as a conv with
    an identity kernel: Debian torch 1.13's im2col took ~5 s per LeNet-5 call on this machine.
    Checked equal to F.unfold in check_unfold()."""
    c = inp.shape[1]
    kh, kw = m.kernel_size
    eye = torch.eye(c * kh * kw, dtype=inp.dtype).reshape(c * kh * kw, c, kh, kw)
    out = F.conv2d(inp, eye, stride=m.stride, padding=m.padding, dilation=m.dilation)
    return out.flatten(2)


def check_unfold():
    m = torch.nn.Conv2d(3, 4, (3, 2), padding=1, stride=2)
    x = torch.randn(2, 3, 9, 8)
    ref = F.unfold(x, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)
    return float((unfold(x, m) - ref).abs().max())


def gram(z):
    """Σ_b Σ_t z[b, :, t] z[b, :, t]ᵀ for z [B, k, T], as one matrix product."""
    z2 = z.transpose(1, 2).reshape(-1, z.shape[1])
    return z2.T @ z2


def abar(m, inp):
    """ā [B, in', T]: the layer input (conv: unfolded patches) with a row of ones appended."""
    if isinstance(m, torch.nn.Conv2d):
        u = unfold(inp, m)
    else:
        u = inp.unsqueeze(2)
    if m.bias is not None:
        u = torch.cat([u, torch.ones_like(u[:, :1])], 1)
    return u


def cotangents(logits, y, est):
    """The estimator's logit cotangents: [R, B, C]."""
    p = torch.softmax(logits, 1)
    if est == "empirical":
        return (F.one_hot(y, p.shape[1]).to(p) - p).unsqueeze(0)
    eye = torch.eye(p.shape[1], dtype=p.dtype)
    # row c: √p_c (e_c − p)
    return torch.stack([p[:, c:c + 1].sqrt() * (eye[c] - p) for c in range(p.shape[1])])


def baseline_factors(net, x, y, est, qs=None, chunk=512):
    """A [in', in'], G [out, out] per layer (float32, nfk's normalisation). With qs (a list of
    (QA, QG) per layer) it returns the EK-FAC scalings S [out, in'] in those bases instead."""
    mods = layer_modules(net)
    saved = {}

    def hook(m, inp, out):
        saved[m] = (inp[0].detach(), out)
    handles = [m.register_forward_hook(hook) for m in mods]
    L = len(mods)
    As, Gs, Ss = [0.0] * L, [0.0] * L, [0.0] * L
    n = x.shape[0]
    try:
        for s in range(0, n, chunk):
            saved.clear()
            logits = net(x[s:s + chunk])
            cots = cotangents(logits.detach(), y[s:s + chunk], est)
            outs = [saved[m][1] for m in mods]
            abars = [abar(m, saved[m][0]) for m in mods]
            if qs is None:
                for li, ab in enumerate(abars):
                    As[li] = As[li] + gram(ab) / ab.shape[2]
            for r in range(cots.shape[0]):
                ds = torch.autograd.grad(logits, outs, grad_outputs=cots[r], retain_graph=True)
                for li, dl in enumerate(ds):
                    dl = dl.reshape(dl.shape[0], dl.shape[1], -1)  # [B, out, T]
                    if qs is None:
                        Gs[li] = Gs[li] + gram(dl)
                    else:
                        qa, qg = qs[li]
                        ab = abars[li]
                        if ab.shape[2] == 1:  # one position: Q_Gᵀ D Q_A = (Q_Gᵀδ)(Q_Aᵀā)ᵀ
                            u, v = dl[:, :, 0] @ qg, ab[:, :, 0] @ qa
                            Ss[li] = Ss[li] + u.square().T @ v.square()
                        else:
                            dmat = torch.bmm(dl, ab.transpose(1, 2))  # per-example D
                            Ss[li] = Ss[li] + (qg.T @ dmat @ qa).square().sum(0)
    finally:
        for h in handles:
            h.remove()
    if qs is None:
        return [(A / n, G / n) for A, G in zip(As, Gs)]
    return [S / n for S in Ss]


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def phase_baseline(a):
    torch.set_num_threads(a.threads)
    d = os.path.join(a.work, "baseline")
    os.makedirs(d, exist_ok=True)
    x, y = run.load_mnist_train(N_EVAL)
    for arch in ARCHS:
        path = os.path.join(d, f"{arch}.json")
        if os.path.exists(path):
            continue
        net = run.load_torch_model(model_path(a.work, arch), arch)
        # parameters keep requires_grad so the layer outputs are in the graph; autograd.grad
        # w.r.t. the outputs computes no parameter gradients
        res = {"torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "unfold_check_max_abs": check_unfold()}
        for est in ESTIMATORS:
            t0, c0 = time.perf_counter(), time.process_time()
            fac = baseline_factors(net, x, y, est)
            w_k, c_k = time.perf_counter() - t0, time.process_time() - c0
            # EK-FAC: eigenbases of the factors, then a second pass for the scalings
            qs = [(torch.linalg.eigh(A.double())[1].float(), torch.linalg.eigh(G.double())[1].float())
                  for A, G in fac]
            baseline_factors(net, x, y, est, qs=qs)
            w_e, c_e = time.perf_counter() - t0, time.process_time() - c0
            # the scalings in nfk's own eigenbases, for a like-for-like comparison
            z, index = load_npz(os.path.join(a.work, "nfk", f"{arch}-ekfac-{est}-{N_EVAL}.npz"))
            zk, _ = load_npz(os.path.join(a.work, "nfk", f"{arch}-kfac-{est}-{N_EVAL}.npz"))
            layers = index["layers"]
            assert len(layers) == len(fac), (len(layers), len(fac))
            qs_nfk = [(torch.from_numpy(z[l["name"] + ".QA"]).float(),
                       torch.from_numpy(z[l["name"] + ".QG"]).float()) for l in layers]
            s_base = baseline_factors(net, x, y, est, qs=qs_nfk)
            cmp = []
            for l, (A, G), S in zip(layers, fac, s_base):
                assert tuple(A.shape) == (l["in"], l["in"]) and tuple(G.shape) == (l["out"], l["out"]), l
                cmp.append({"layer": l["name"], "out": l["out"], "in": l["in"],
                            "positions": l["positions"],
                            "kfac_A": rel(zk[l["name"] + ".A"], A.numpy()),
                            "kfac_G": rel(zk[l["name"] + ".G"], G.numpy()),
                            "ekfac_A": rel(z[l["name"] + ".A"], A.numpy()),
                            "ekfac_G": rel(z[l["name"] + ".G"], G.numpy()),
                            "ekfac_scalings": rel(z[l["name"] + ".scalings"], S.numpy())})
            res[est] = {"kfac": {"wall_s": w_k, "cpu_s": c_k},
                        "ekfac": {"wall_s": w_e, "cpu_s": c_e}, "layers": cmp}
            worst = {k: max(c[k] for c in cmp) for k in cmp[0] if k.startswith(("kfac", "ekfac"))}
            print(f"baseline {arch} {est}: kfac {w_k:.2f} s, ekfac {w_e:.2f} s wall; worst rel "
                  f"diff {worst}", flush=True)
        json.dump(res, open(path, "w"), indent=1)


# --- the last layer's block against the exact Fisher ------------------------------------------


def phase_block(a):
    torch.set_num_threads(a.threads)
    out = {}
    for arch, nb in [(arch, nb) for nb in BLOCK_NS for arch in ARCHS]:
        x, _ = run.load_mnist_train(nb)
        net = run.load_torch_model(model_path(a.work, arch), arch).double()
        last = layer_modules(net)[-1]
        wname = [k for k, v in net.named_parameters() if v is last.weight][0]
        bname = [k for k, v in net.named_parameters() if v is last.bias][0]
        params = {k: v.detach() for k, v in net.named_parameters()}
        xd = x.double()
        with torch.no_grad():
            prob = torch.softmax(net(xd), 1)

        def logp(wb, xi, yi):
            p = dict(params)
            p[wname], p[bname] = wb
            lg = functional_call(net, p, (xi.unsqueeze(0),))
            return torch.log_softmax(lg, 1)[0].gather(0, yi.unsqueeze(0)).squeeze(0)
        g = vmap(grad(logp), in_dims=(None, 0, 0))
        nclass = prob.shape[1]
        blk = None
        for c in range(nclass):
            gw, gb = g((params[wname], params[bname]), xd,
                       torch.full((nb,), c, dtype=torch.long))
            m = torch.cat([gw, gb.unsqueeze(2)], 2).flatten(1)  # row-major vec(M) [N, out·in']
            term = (prob[:, c:c + 1] * m).T @ m
            blk = term if blk is None else blk + term
        exact = (blk / nb).numpy()
        r = {}
        for form in FORMS:
            z, index = load_npz(os.path.join(a.work, "nfk", f"{arch}-{form}-true-{nb}.npz"))
            name = index["layers"][-1]["name"]
            A, G = z[name + ".A"], z[name + ".G"]
            if form == "kfac":
                approx = np.kron(G, A)
            else:
                q = np.kron(z[name + ".QG"], z[name + ".QA"])
                approx = (q * z[name + ".scalings"].reshape(-1)) @ q.T
            r[form] = {"rel_frobenius": rel(approx, exact), "layer": name,
                       "shape": list(exact.shape)}
        r["exact_trace"] = float(np.trace(exact))
        r["kfac_trace"] = float(np.trace(np.kron(G, A)))
        out[f"{arch}-N{nb}"] = r
        print(f"block {arch} N={nb} {r['kfac']['layer']} {exact.shape}: K-FAC rel err "
              f"{r['kfac']['rel_frobenius']:.4g}, EK-FAC {r['ekfac']['rel_frobenius']:.4g}",
              flush=True)
    json.dump(out, open(os.path.join(a.work, "block.json"), "w"), indent=1)


def phase_report(a):
    rep = {"n_eval": N_EVAL, "n_block": N_BLOCK, "seed": SEED, "nfk": {}, "baseline": {},
           "block": json.load(open(os.path.join(a.work, "block.json")))}
    d = os.path.join(a.work, "nfk")
    for f in sorted(os.listdir(d)):
        if f.endswith(".json"):
            rep["nfk"][f[:-5]] = json.load(open(os.path.join(d, f)))
    for arch in ARCHS:
        rep["baseline"][arch] = json.load(open(os.path.join(a.work, "baseline", f"{arch}.json")))
    json.dump(rep, open(os.path.join(HERE, "kfac.json"), "w"), indent=1)
    print("| model | form | estimator | nfk wall s (cpu s) | baseline wall s (cpu s) |")
    for arch in ARCHS:
        for form in FORMS:
            for est in ESTIMATORS:
                n = rep["nfk"][f"{arch}-{form}-{est}-{N_EVAL}"]
                b = rep["baseline"][arch][est][form]
                print(f"| {arch} | {form} | {est} | {n['wall_s']:.2f} ({n['cpu_s']:.2f}) | "
                      f"{b['wall_s']:.2f} ({b['cpu_s']:.2f}) |")
    print("| model | estimator | layer | T | A (kfac) | G (kfac) | A (ekfac) | G (ekfac) | S (ekfac) |")
    for arch in ARCHS:
        for est in ESTIMATORS:
            for c in rep["baseline"][arch][est]["layers"]:
                print(f"| {arch} | {est} | {c['layer']} [{c['out']}×{c['in']}] | {c['positions']} | "
                      f"{c['kfac_A']:.1e} | {c['kfac_G']:.1e} | {c['ekfac_A']:.1e} | "
                      f"{c['ekfac_G']:.1e} | {c['ekfac_scalings']:.1e} |")
    for arch in ARCHS:
        print(arch, {o: (rep["nfk"][f"{arch}-overhead"]["wall_s"]) for o in [0]})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nfk", default="build/nfk")
    ap.add_argument("--work", default="/tmp/kfac-work")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--phases", default="train,nfk,baseline,block,report")
    a = ap.parse_args()
    a.nfk = os.path.abspath(a.nfk)
    os.makedirs(a.work, exist_ok=True)
    for ph in a.phases.split(","):
        t0 = time.perf_counter()
        globals()["phase_" + ph](a)
        print(f"[phase {ph}: {time.perf_counter() - t0:.1f} s]", flush=True)


if __name__ == "__main__":
    main()

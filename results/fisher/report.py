#!/usr/bin/python3
"""The report phase of results/fisher/run.py (`--phases report`): results.json, the figures and the
tables in README.md, from what the other phases left in the work folder."""
import json
import os
import subprocess

import numpy as np

from run import ARCHS, BATCHED_B, HERE, N_EVAL, SEED, STAGES, fisher_runs, model_dir


def ranks(v):
    """Average ranks (ties share their mean rank), as scipy.stats.rankdata."""
    order = np.argsort(v, kind="mergesort")
    r = np.empty(len(v))
    r[order] = np.arange(len(v))
    _, inv, counts = np.unique(v, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=r)
    return (sums / counts)[inv]


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    return float((ra * rb).sum() / np.sqrt((ra * ra).sum() * (rb * rb).sum()))


def rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def phase_report(a):
    fdir, bdir = os.path.join(a.work, "fisher"), os.path.join(a.work, "baseline")
    res = {"n_eval": N_EVAL, "eval_data": f"mnist:train[:{N_EVAL}]", "seed": SEED,
           "stages": [{"name": s, "train_data": d, "epochs": e, "adam_steps": k}
                      for s, d, e, k in STAGES],
           "overhead": {}, "models": {}}
    for arch in ARCHS:
        res["overhead"][arch] = json.load(open(os.path.join(fdir, f"{arch}-overhead.json")))
        for stage, *_ in STAGES:
            key = f"{arch}-{stage}"
            m = {}
            log = json.load(open(os.path.join(model_dir(a.work, arch, stage), "train_log.json")))
            m["test_accuracy"] = log.get("test_accuracy")
            diags, runs = {}, {}
            for tag, _ in fisher_runs() + [("truestats", None)]:
                p = os.path.join(fdir, f"{key}-{tag}")
                if not os.path.exists(p + ".json"):
                    continue
                j = json.load(open(p + ".json"))
                runs[tag] = {k: j[k] for k in ("trace", "n_rows", "gradient_path", "wall_s",
                                                "cpu_s", "stats") if k in j}
                diags[tag] = np.load(p + ".npy").astype(np.float64)
            m["nfk"] = runs
            t = diags["true"]
            m["vs_true"] = {tag: {"spearman": spearman(d, t), "rel_diff": rel(d, t),
                                  "trace_ratio": float(d.sum() / t.sum())}
                            for tag, d in diags.items() if tag not in ("true", "truestats")}
            # The batched estimator's expectation over random batches of B from the N examples:
            # iid (with replacement):    F_emp/B + (1 - 1/B) ḡ²
            # without replacement (fpc): ḡ² + (N-B)/(B(N-1)) (F_emp - ḡ²)
            emp, g2 = diags["empirical"], diags["gbar2"]
            bat = {}
            for b in BATCHED_B:
                obs = diags[f"batched{b}"]
                iid = emp / b + (1 - 1 / b) * g2
                fpc = g2 + (N_EVAL - b) / (b * (N_EVAL - 1)) * (emp - g2)
                bat[str(b)] = {"trace": float(obs.sum()), "trace_expected_iid": float(iid.sum()),
                               "trace_expected_fpc": float(fpc.sum()),
                               "rel_diff_iid": rel(obs, iid), "rel_diff_fpc": rel(obs, fpc),
                               "spearman_fpc": spearman(obs, fpc)}
            m["batched"] = {"trace_empirical": float(emp.sum()), "trace_gbar2": float(g2.sum()),
                            "by_B": bat}
            bj = os.path.join(bdir, key + ".json")
            if os.path.exists(bj):
                b = json.load(open(bj))
                m["train_subset_accuracy"] = b["train_subset_accuracy"]
                m["train_subset_loss"] = b["train_subset_loss"]
                m["baseline"] = {k: b[k] for k in ("true", "empirical")}
                agree = {}
                for tag in ["true", "empirical"] + [f"batched{x}" for x in BATCHED_B] + ["gbar2"]:
                    src = f"batched{N_EVAL}" if tag == "gbar2" else tag
                    ref = np.load(os.path.join(bdir, f"{key}-{src}.npy")).astype(np.float64)
                    agree[tag] = {"rel_diff": rel(diags[tag], ref),
                                  "max_abs_over_max": float(np.abs(diags[tag] - ref).max()
                                                            / np.abs(ref).max())}
                m["nfk_vs_baseline"] = agree
            res["models"][key] = m
    bn = os.path.join(a.work, "batchnoise.json")
    if os.path.exists(bn):
        res["batched_random_partitions"] = json.load(open(bn))
    eig = os.path.join(a.work, "eigcheck.json")
    if os.path.exists(eig):
        res["eigcheck_n256"] = json.load(open(eig))
    res["machine"] = subprocess.run("lscpu | grep 'Model name'", shell=True, text=True,
                                    capture_output=True).stdout.strip()
    res["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], cwd=HERE, text=True,
                                   capture_output=True).stdout.strip()
    json.dump(res, open(os.path.join(HERE, "results.json"), "w"), indent=1)
    figures(a, res)


def figures(a, res):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fdir = os.path.join(a.work, "fisher")
    # 1. Diagonals of the trained LeNet-5, true on the x axis.
    t = np.load(os.path.join(fdir, "lenet5-e3-true.npy")).astype(np.float64)
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2), sharex=True, sharey=True)
    for ax, tag in zip(axes, ["empirical", "mc1", "mc10", "batched128"]):
        d = np.load(os.path.join(fdir, f"lenet5-e3-{tag}.npy")).astype(np.float64)
        ok = (t > 0) & (d > 0)
        ax.loglog(t[ok], d[ok], ",", alpha=0.3)
        lo, hi = t[ok].min(), t[ok].max()
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        v = res["models"]["lenet5-e3"]["vs_true"][tag]
        ax.set_title(f"{tag}: Spearman {v['spearman']:.3f}, rel {v['rel_diff']:.2f}")
        ax.set_xlabel("true F_jj")
    axes[0].set_ylabel("estimator F_jj")
    fig.suptitle("LeNet-5 after 3 epochs, mnist:train[:2048]: diagonal Fisher per parameter")
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "diag_scatter_lenet5.png"), dpi=110)
    plt.close(fig)
    # 2. The true/empirical gap along training.
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    steps = [s["adam_steps"] for s in res["stages"]]
    xs = np.arange(len(steps))
    for arch in ARCHS:
        ms = [res["models"][f"{arch}-{s['name']}"] for s in res["stages"]]
        line, = axes[0].plot(xs, [m["vs_true"]["empirical"]["rel_diff"] for m in ms], "o-",
                             label=f"{arch} empirical")
        axes[0].plot(xs, [m["vs_true"]["mc1"]["rel_diff"] for m in ms], "x--",
                     color=line.get_color(), label=f"{arch} mc S=1 (same row count)")
        axes[1].plot(xs, [m["vs_true"]["empirical"]["spearman"] for m in ms], "o-", label=arch)
        axes[2].plot(xs, [m["vs_true"]["empirical"]["trace_ratio"] for m in ms], "o-",
                     label=arch)
        for i, m in enumerate(ms):
            if "train_subset_accuracy" in m:
                axes[0].annotate(f"{100 * m['train_subset_accuracy']:.0f}%", (xs[i],
                                 m["vs_true"]["empirical"]["rel_diff"]), fontsize=8)
    for ax, title in zip(axes, ["‖d_emp − d_true‖/‖d_true‖ (label: train-subset accuracy)",
                                "Spearman(d_emp, d_true)", "trace F_emp / trace F"]):
        ax.set_xticks(xs, [f"{n} steps" for n in steps])
        ax.set_title(title, fontsize=10)
        ax.legend()
    axes[2].axhline(1, color="k", lw=0.6)
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "true_empirical_gap.png"), dpi=110)
    plt.close(fig)
    # 3. Batched trace vs B, against its expectations.
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, arch in zip(axes, ARCHS):
        for s, c in zip(["e0", "e3"], ["C0", "C1"]):
            m = res["models"][f"{arch}-{s}"]
            bb = m["batched"]["by_B"]
            B = [int(b) for b in bb]
            ax.loglog(B, [bb[str(b)]["trace"] for b in B], "o", color=c, label=f"{s} nfk batched")
            ax.loglog(B, [bb[str(b)]["trace_expected_fpc"] for b in B], "-", color=c,
                      label=f"{s} expected (w/o replacement)")
            ax.loglog(B, [bb[str(b)]["trace_expected_iid"] for b in B], ":", color=c,
                      label=f"{s} F_emp/B + (1-1/B) ḡ²")
            ax.axhline(m["nfk"]["true"]["trace"], color=c, lw=0.6, ls="--")
        ax.set_title(f"{arch}: batched trace vs B (dashed: true trace)", fontsize=10)
        ax.set_xlabel("B")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "batched_vs_B.png"), dpi=110)
    plt.close(fig)


def phase_tables(a):
    """Markdown tables of results.json (pasted into README.md)."""
    res = json.load(open(os.path.join(HERE, "results.json")))
    tags = ["empirical", "mc1", "mc10", "batched32", "batched128", "batched512"]
    print("\n### Estimators vs true (Spearman / relative difference / trace ratio)\n")
    print("| model | stage | train-subset acc | trace true | " + " | ".join(tags) + " |")
    print("|---|---|---|---|" + "---|" * len(tags))
    for key, m in res["models"].items():
        arch, stage = key.split("-")
        cells = [f"{m['vs_true'][t]['spearman']:.3f} / {m['vs_true'][t]['rel_diff']:.3f} / "
                 f"{m['vs_true'][t]['trace_ratio']:.3g}" for t in tags]
        print(f"| {arch} | {stage} | {100 * m.get('train_subset_accuracy', float('nan')):.1f}% | "
              f"{m['nfk']['true']['trace']:.4g} | " + " | ".join(cells) + " |")
    print("\n### Batched: observed trace vs expectation (relative diagonal difference)\n")
    print("| model | stage | tr F_emp | tr ḡ² | B | tr batched | tr E (iid) | tr E (w/o repl.) "
          "| rel diff iid | rel diff w/o repl. |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for key, m in res["models"].items():
        arch, stage = key.split("-")
        for b, v in m["batched"]["by_B"].items():
            print(f"| {arch} | {stage} | {m['batched']['trace_empirical']:.4g} | "
                  f"{m['batched']['trace_gbar2']:.4g} | {b} | {v['trace']:.4g} | "
                  f"{v['trace_expected_iid']:.4g} | {v['trace_expected_fpc']:.4g} | "
                  f"{v['rel_diff_iid']:.3f} | {v['rel_diff_fpc']:.3f} |")
    if "batched_random_partitions" in res:
        print("\n### Batched over 100 random partitions vs nfk's contiguous batches\n")
        print("| model | stage | B | nfk trace | random: trace mean ± std | z | nfk rel diff "
              "(w/o repl.) | random: rel diff median / 90% |")
        print("|---|---|---|---|---|---|---|---|")
        for key, r in res["batched_random_partitions"].items():
            arch, stage = key.split("-")
            for b, v in r.items():
                o = res["models"][key]["batched"]["by_B"][b]
                z = (o["trace"] - v["trace_mean"]) / v["trace_std"]
                print(f"| {arch} | {stage} | {b} | {o['trace']:.4g} | {v['trace_mean']:.4g} ± "
                      f"{v['trace_std']:.2g} | {z:+.1f} | {o['rel_diff_fpc']:.3f} | "
                      f"{v['rel_diff_fpc_median']:.3f} / {v['rel_diff_fpc_p90']:.3f} |")
    print("\n### Timings (s; min / median over the 4 stages, wall and CPU user+sys)\n")
    print("| model | what | wall min | wall median | CPU min | CPU median |")
    print("|---|---|---|---|---|---|")
    for arch in ARCHS:
        ms = [res["models"][f"{arch}-{s['name']}"] for s in res["stages"]]
        ov = res["overhead"][arch]
        print(f"| {arch} | nfk overhead (1 example) | {min(ov['wall_s']):.2f} | "
              f"{np.median(ov['wall_s']):.2f} | {min(ov['cpu_s']):.2f} | "
              f"{np.median(ov['cpu_s']):.2f} |")
        for t in ["true", "mc1", "mc10", "empirical", "batched32", "batched128", "batched512"]:
            w = [m["nfk"][t]["wall_s"] for m in ms]
            c = [m["nfk"][t]["cpu_s"] for m in ms]
            print(f"| {arch} | nfk {t} | {min(w):.2f} | {np.median(w):.2f} | {min(c):.2f} | "
                  f"{np.median(c):.2f} |")
        for t in ["true", "empirical"]:
            w = [m["baseline"][t]["wall_s"] for m in ms]
            c = [m["baseline"][t]["cpu_s"] for m in ms]
            print(f"| {arch} | torch vmap(grad) {t} | {min(w):.2f} | {np.median(w):.2f} | "
                  f"{min(c):.2f} | {np.median(c):.2f} |")
        m3 = res["models"][f"{arch}-e3"]["nfk"].get("truestats")
        if m3:
            print(f"| {arch} | nfk true --stats --top-k 10 (e3) | {m3['wall_s']:.2f} | | "
                  f"{m3['cpu_s']:.2f} | |")
    print("\n### nfk vs the torch baseline (relative difference of the diagonals, float32)\n")
    keys = ["true", "empirical", "batched32", "batched128", "batched512", "gbar2"]
    print("| model | stage | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for key, m in res["models"].items():
        arch, stage = key.split("-")
        print(f"| {arch} | {stage} | " + " | ".join(
            f"{m['nfk_vs_baseline'][k]['rel_diff']:.1e}" for k in keys) + " |")
    print("\n### Spectrum of the true Fisher, trained (e3) models, N = 2048\n")
    for arch in ARCHS:
        st = res["models"][f"{arch}-e3"]["nfk"].get("truestats", {}).get("stats")
        if st:
            print(f"- {arch}: trace {st['trace']:.4g}; top-10 " +
                  ", ".join(f"{v:.4g}" for v in st["top_eigenvalues"]) +
                  f"; top-10 share {st['top_k_share']:.3f}; effective rank (entropy) "
                  f"{st['effective_rank_entropy']:.2f}, (Σλ)²/Σλ² {st['effective_rank_ratio']:.2f}"
                  f"; sloppy share {100 * st['sloppy_fraction']:.1f}%")
    if "eigcheck_n256" in res:
        print("\nDense check (N = 256):")
        for arch, v in res["eigcheck_n256"].items():
            print(f"- {arch}: nfk " + ", ".join(f"{x:.5g}" for x in v["nfk"]) + "; dense " +
                  ", ".join(f"{x:.5g}" for x in v["dense"]) +
                  f"; max rel diff {v['max_rel_diff']:.1e}")

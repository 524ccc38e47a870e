#!/usr/bin/env python3
"""Writes results/report/README.md from the JSON outputs of scripts/reproduce (stdlib only)."""
import argparse
import json
import os
import platform
import subprocess

NAMES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}
REPS = [("pixels", "raw pixels"), ("pca128", "PCA-128"), ("activations", "D activations"),
        ("actpca128", "PCA-128 of D activations"), ("nfk32", "NFK-32"), ("nfk64", "NFK-64"),
        ("nfk128", "NFK-128"), ("nfk256", "NFK-256")]
SEMI_REPS = [("pixels", "raw pixels"), ("pca128", "PCA-128"), ("activations", "D activations"),
             ("nfk128", "NFK-128")]


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def pct(x):
    return "—" if x is None else f"{100 * x:.2f}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("sets", nargs="+")
    a = ap.parse_args()
    sets = a.sets
    data = {ds: os.path.join(a.work, ds) for ds in sets}
    j = lambda ds, name: load(os.path.join(data[ds], name + ".json"))
    lines = []
    w = lines.append
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=os.path.dirname(a.out)).stdout.strip()
    w("# What an unsupervised GAN's NFK embedding is worth: MNIST and Fashion-MNIST\n")
    w("Produced by `scripts/reproduce` (commit " + commit + ", " + platform.machine() + ", "
      f"{os.cpu_count()} cores, CPU only). For each data set: a DCGAN trained without labels on "
      "the 60,000 training images (`nfk train gan`, 5 epochs); its discriminator's NFK fitted on "
      "the first training images, unlabeled (`nfk fit --kind gan`, rank 256, the method `auto` "
      "chose, Fisher reference = generator samples; sizes in the spectrum table) and applied to "
      "all 70,000 images; every representation below computed by "
      "`nfk transform` / `nfk features` on the same split and scored by the same `nfk probe` "
      "(multinomial logistic regression, L2 chosen by 3-fold cross-validation on the training "
      "set, L-BFGS to a gradient tolerance of 1e-6), `nfk semisup` and `nfk knn`. "
      "Accuracies are on the full 10,000-image test sets.\n")

    def spectrum_row(ds):
        s = j(ds, "spectrum")
        if not s:
            return None
        r = s["explained_variance_ratio"]
        cum = lambda k: sum(r[:k])
        return s, cum

    w("## Linear probing (test accuracy, %)\n")
    w("| representation | dim | " + " | ".join(NAMES.get(ds, ds) for ds in sets) + " |")
    w("|---|---|" + "---|" * len(sets))
    for rep, label in REPS:
        dims = [p["dim"] for ds in sets if (p := j(ds, "probe_" + rep))]
        w(f"| {label} | {dims[0] if dims else '—'} | " + " | ".join(
            pct((j(ds, "probe_" + rep) or {}).get("test_accuracy")) for ds in sets) + " |")
    w("")
    w("## NFK-128 against the full Fisher vector (same training subset)\n")
    w("The full Fisher vector V_x (AFV) has one coordinate per discriminator parameter; it is "
      "materialised for the first training images only (memory), so NFK-128 and PCA-128 are "
      "probed on the same subset here.\n")
    w("| representation | dim | train images | " + " | ".join(NAMES.get(ds, ds) for ds in sets)
      + " |")
    w("|---|---|---|" + "---|" * len(sets))
    for rep, label in [("fv", "full Fisher vector"), ("nfk128_sub", "NFK-128"),
                       ("pca128_sub", "PCA-128")]:
        ps = [j(ds, "probe_" + rep) for ds in sets]
        first = next((p for p in ps if p), None)
        w(f"| {label} | {first['dim'] if first else '—'} | {first['n_train'] if first else '—'} | "
          + " | ".join(pct((p or {}).get("test_accuracy")) for p in ps) + " |")
    w("")
    w("## Semi-supervised: n labels per class (test accuracy %, mean ± std over 5 draws)\n")
    w("The representation is learned without labels (GAN and NFK on unlabeled training images); a linear "
      "probe (L2 cross-validated on the few labels) then sees n labelled examples per class.\n")
    for ds in sets:
        w(f"**{NAMES.get(ds, ds)}**\n")
        w("| representation | 10 | 50 | 100 |")
        w("|---|---|---|---|")
        for rep, label in SEMI_REPS:
            s = j(ds, "semisup_" + rep)
            cells = []
            for n in (10, 50, 100):
                row = next((r for r in (s or {}).get("rows", []) if r["labels_per_class"] == n),
                           None)
                cells.append("—" if not row else f"{100 * row['mean']:.2f} ± {100 * row['std']:.2f}")
            w(f"| {label} | " + " | ".join(cells) + " |")
        w("")
    w("## k-nearest neighbours (k = 10, cosine; test accuracy %)\n")
    w("| representation | " + " | ".join(NAMES.get(ds, ds) for ds in sets) + " |")
    w("|---|" + "---|" * len(sets))
    for rep, label in SEMI_REPS:
        w(f"| {label} | " + " | ".join(pct((j(ds, "knn_" + rep) or {}).get("test_accuracy"))
                                      for ds in sets) + " |")
    w("")
    w("## Verdict against the goal\n")
    w("Goal: NFK-128 above every baseline under linear probing, and within 0.5 points of the "
      "full Fisher vector.\n")
    for ds in sets:
        nfk = (j(ds, "probe_nfk128") or {}).get("test_accuracy")
        base = {label: (j(ds, "probe_" + rep) or {}).get("test_accuracy")
                for rep, label in REPS[:3]}
        fv = (j(ds, "probe_fv") or {}).get("test_accuracy")
        sub = (j(ds, "probe_nfk128_sub") or {}).get("test_accuracy")
        if nfk is None:
            continue
        beaten = [k for k, v in base.items() if v is not None and v >= nfk]
        missing = [k for k, v in base.items() if v is None]
        verdict = ("above every baseline run" if not beaten else
                   "below " + ", ".join(f"{k} ({pct(base[k])})" for k in beaten))
        if missing:
            verdict += " (not run yet: " + ", ".join(missing) + ")"
        gap = "—" if fv is None or sub is None else f"{100 * (fv - sub):+.2f}"
        w(f"- **{NAMES.get(ds, ds)}**: NFK-128 {pct(nfk)}% is {verdict}; full Fisher vector "
          f"minus NFK-128 on the same subset: {gap} points.")
        act128 = (j(ds, "probe_actpca128") or {}).get("test_accuracy")
        if act128 is not None:
            w(f"  At equal dimension, PCA-128 of the D activations reaches {pct(act128)}% "
              f"(NFK-128 {100 * (nfk - act128):+.2f} points).")
    w("")
    w("## The NFK spectrum\n")
    w("| data set | examples | parameters | top-32 | top-64 | top-128 | top-256 "
      "(share of ‖V‖²_F) |")
    w("|---|---|---|---|---|---|---|")
    for ds in sets:
        sr = spectrum_row(ds)
        if not sr:
            continue
        s, cum = sr
        w(f"| {NAMES.get(ds, ds)} | {s['n_examples']} | {s['n_params']} | "
          + " | ".join(f"{100 * cum(k):.1f}%" for k in (32, 64, 128, 256)) + " |")
    w("")
    for ds in sets:
        w(f"![{ds} spectrum]({ds}-spectrum.png)\n")
    w("## Fisher distances between classes\n")
    w("Class-mean Fisher distance ‖mean_a V − mean_b V‖ on 5,000 test images (`nfk distance "
      "--data`), rows/columns = classes 0–9 (dark = close).\n")
    for ds in sets:
        c = j(ds, "class_distances")
        if c:
            m = c["class_distances"]
            off = [(m[i][k], i, k) for i in range(len(m)) for k in range(len(m)) if i < k]
            lo, hi = min(off), max(off)
            w(f"![{ds} class distances]({ds}-class-distances.png) {NAMES.get(ds, ds)}: closest "
              f"classes {lo[1]}–{lo[2]} ({lo[0]:.3g}), farthest {hi[1]}–{hi[2]} ({hi[0]:.3g}).\n")
    w("## Nearest neighbours in NFK-128 (cosine)\n")
    w("Each row: a test image, then its 8 nearest training images.\n")
    for ds in sets:
        w(f"![{ds} neighbours]({ds}-neighbours.png)\n")
    w("## GAN inversion from 100-d NFK embeddings (App. C)\n")
    w("A ridge map from the 100-d NFK embedding of 10,000 generated images back to their latent "
      "codes; real test images are then reconstructed as G(h(e(x))). Rows: real, NFK inversion, "
      "PCA-100 reconstruction.\n")
    w("| data set | latent R² (generated) | MSE NFK inversion | MSE PCA-100 |")
    w("|---|---|---|---|")
    for ds in sets:
        i = j(ds, "inversion")
        if i:
            w(f"| {NAMES.get(ds, ds)} | {i['latent_fit_r2']:.3f} | {i['nfk_mse']:.4f} | "
              f"{i['pca_mse']:.4f} |")
    w("")
    for ds in sets:
        w(f"![{ds} inversion]({ds}-inversion.png)\n")
    w("## GAN training monitoring (AFV Fig. 3)\n")
    w("A GAN trained on only 500 images, a snapshot every 3 epochs; Fisher similarity of the 500 "
      "training images and of 500 held-out test images to each snapshot's generator samples "
      "(`nfk monitor`, c = 2e-4: with c = 1 every similarity underflows to 0 for this small-data GAN).\n")
    for ds in sets:
        m = j(ds, "monitor")
        if not m:
            continue
        pts = m["points"]
        w(f"![{ds} monitoring]({ds}-monitor.png)\n")
        w("| epoch | " + " | ".join(str(p["epoch"]) for p in pts) + " |")
        w("|---|" + "---|" * len(pts))
        w("| train | " + " | ".join(f"{p['train_similarity']:.2f}" for p in pts) + " |")
        w("| test | " + " | ".join(f"{p['test_similarity']:.2f}" for p in pts) + " |")
        w("")
    w("## Runtime\n")
    total = 0
    rows = []
    for ds in sets:
        path = os.path.join(a.work, "times.jsonl")
    if os.path.exists(os.path.join(a.work, "times.jsonl")):
        with open(os.path.join(a.work, "times.jsonl")) as f:
            for line in f:
                t = json.loads(line)
                total += t["seconds"]
                rows.append(t)
    w(f"Total {total / 60:.1f} min of wall time over {len(rows)} steps; the slowest:\n")
    w("| step | seconds | command |")
    w("|---|---|---|")
    for t in sorted(rows, key=lambda t: -t["seconds"])[:12]:
        cmd = t["command"].strip().replace("out/nfk_report_bin", "nfk").replace("out/report/", "")
        w(f"| {t['step']} | {t['seconds']} | `{cmd}` |")
    w("")
    w("Findings and where the goal is missed: [FINDINGS.md](FINDINGS.md).")
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, a.out)


if __name__ == "__main__":
    main()

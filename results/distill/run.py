#!/usr/bin/python3
"""Knowledge distillation with the teacher's NFK (issue "Knowledge distillation"): teacher,
student alone, KD and NFKD (l2, cosine) on Fashion-MNIST and MNIST, with all labels and with
1,000; the teacher's NFK linear-probe accuracy vs k (the paper's Figure 7); an ablation over
alpha and k. Every number in README.md comes from results.json, written here.

Usage: /usr/bin/python3 results/distill/run.py --nfk build/nfk --work /tmp/distill-work
       [--phases teachers,probe,students,ablation,cka,report] [--sets fashion-mnist,mnist]
Phases skip work whose outputs exist, so an interrupted run continues.
"""
import argparse
import json
import os
import subprocess
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE_K = [1, 2, 5, 10, 20, 50, 100]
TEACHER_EPOCHS = 5
FIT_EXAMPLES = 10000  # the teacher's NFK is fitted on the first 10k training images
STUDENT = ["--student-arch", "mlp", "--hidden", "100"]
STUDENT_EPOCHS = 5
SEEDS = 3
LABELLED = [0, 1000]  # 0: every training label
METHODS = {  # row name -> nfk distill flags
    "student alone": ["--method", "none"],
    "KD (T=4, alpha=0.5)": ["--method", "kd", "--temperature", "4", "--alpha", "0.5"],
    "NFKD l2 (k=20, alpha=0.5)": ["--method", "nfkd", "--loss", "l2", "--rank", "20", "--alpha", "0.5"],
    "NFKD cosine (k=20, alpha=0.5)": ["--method", "nfkd", "--loss", "cosine", "--rank", "20",
                                      "--alpha", "0.5"],
}
ABLATION = {  # Fashion-MNIST, 1,000 labels, NFKD
    "l2, alpha=0.1, k=20": ["--loss", "l2", "--alpha", "0.1", "--rank", "20"],
    "l2, alpha=0.9, k=20": ["--loss", "l2", "--alpha", "0.9", "--rank", "20"],
    "l2, alpha=0.5, k=5": ["--loss", "l2", "--alpha", "0.5", "--rank", "5"],
    "l2, alpha=0.5, k=100": ["--loss", "l2", "--alpha", "0.5", "--rank", "100"],
    "l2, alpha=0.01, k=20": ["--loss", "l2", "--alpha", "0.01", "--rank", "20"],
    "cosine, alpha=0.1, k=20": ["--loss", "cosine", "--alpha", "0.1", "--rank", "20"],
}


def sh(cmd, log=None):
    print("+", " ".join(cmd), flush=True)
    t0 = time.time()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    if log:  # stdout only (the JSON); progress goes to stderr
        with open(log, "w") as f:
            f.write(out.stdout)
    return time.time() - t0


def slug(name):
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def teachers(a, results):
    for ds in a.sets:
        out = f"{a.work}/teacher_{ds}"
        if not os.path.exists(f"{out}/classifier.zoo"):
            s = sh([a.nfk, "train", "classifier", "--arch", "lenet5", "--data", f"{ds}:train",
                    "--test-data", f"{ds}:test", "--epochs", str(TEACHER_EPOCHS), "--seed", "0",
                    "--out", out, "--quiet"])
            results.setdefault("wall_seconds", {})[f"teacher_{ds}"] = s
        log = json.load(open(f"{out}/train_log.json"))
        results.setdefault("teachers", {})[ds] = {
            "arch": "lenet5", "epochs": TEACHER_EPOCHS, "test_accuracy": log["test_accuracy"]}
        proj = f"{a.work}/teacher_{ds}.nfk"
        if not os.path.exists(proj):
            s = sh([a.nfk, "fit", "--model", f"{out}/classifier.zoo", "--kind", "classifier",
                    "--data", f"{ds}:train[:{FIT_EXAMPLES}]", "--rank", str(max(PROBE_K)),
                    "--seed", "0", "--out", proj, "--json"], log=f"{proj}.json")
            results.setdefault("wall_seconds", {})[f"fit_{ds}"] = s
        fit = json.loads(open(f"{proj}.json").read().strip().splitlines()[-1])
        results["teachers"][ds]["nfk_fit"] = {
            "examples": FIT_EXAMPLES, "rank": max(PROBE_K), "method_note": fit["method_note"],
            "explained_variance_ratio_top20": sum(fit["spectrum"]["explained_variance_ratio"][:20])}


def probe(a, results):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    for ds in a.sets:
        proj = f"{a.work}/teacher_{ds}.nfk"
        emb = {}
        for split, data in (("train", f"{ds}:train[:{FIT_EXAMPLES}]"), ("test", f"{ds}:test")):
            path = f"{a.work}/probe_{ds}_{split}.npy"
            if not os.path.exists(path):
                sh([a.nfk, "transform", "--projector", proj, "--data", data, "--out", path,
                    "--quiet"])
            emb[split] = np.load(path).astype(np.float64)
        y_train = idx_labels(ds, "train")[:FIT_EXAMPLES]
        y_test = idx_labels(ds, "test")
        rows = []
        for k in PROBE_K:
            scaler = StandardScaler().fit(emb["train"][:, :k])
            clf = LogisticRegression(max_iter=2000, C=1.0)
            clf.fit(scaler.transform(emb["train"][:, :k]), y_train)
            acc = clf.score(scaler.transform(emb["test"][:, :k]), y_test)
            rows.append({"k": k, "test_accuracy": acc})
            print(f"probe {ds} k={k}: {acc:.4f}", flush=True)
        results.setdefault("probe", {})[ds] = rows


def idx_labels(ds, split):
    """Labels of a named set, read from the IDX files nfk reads (no nfk code involved)."""
    import gzip
    root = os.environ.get("NFK_DATA_DIR", os.path.join(HERE, "..", "..", "data"))
    name = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}[split]
    for path in (f"{root}/{ds}/{name}.gz", f"{root}/{ds}/{name}"):
        if os.path.exists(path):
            raw = (gzip.open if path.endswith(".gz") else open)(path, "rb").read()
            return np.frombuffer(raw[8:], dtype=np.uint8).astype(np.int64)
    raise FileNotFoundError(f"no {name} under {root}/{ds}")


def teacher_targets(a, ds):
    """e(x) of every training image by the teacher's rank-100 projector, computed once per set
    (`nfk transform`) and given to every NFKD student with `--targets`, which takes its top k."""
    path = f"{a.work}/targets_{ds}.npy"
    if not os.path.exists(path):
        s = sh([a.nfk, "transform", "--projector", f"{a.work}/teacher_{ds}.nfk", "--data",
                f"{ds}:train", "--out", path, "--quiet"])
        a.results.setdefault("wall_seconds", {})[f"targets_{ds}"] = s
    return path


def distill(a, ds, labelled, name, flags, out):
    if not os.path.exists(f"{out}/result.json"):
        cmd = [a.nfk, "distill", "--teacher", f"{a.work}/teacher_{ds}/classifier.zoo",
               "--data", f"{ds}:train", "--test-data", f"{ds}:test", *STUDENT,
               "--epochs", str(STUDENT_EPOCHS), "--seeds", str(SEEDS), "--labelled", str(labelled),
               "--out", out, "--quiet", *flags]
        if "nfkd" in flags:
            cmd += ["--targets", teacher_targets(a, ds)]
        sh(cmd)
    r = json.load(open(f"{out}/result.json"))
    accs = [s["test_accuracy"] for s in r["seeds"]]
    return {"method": name, "flags": flags, "mean": float(np.mean(accs)),
            "std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0, "per_seed": accs,
            "seconds": r["seconds"], "epoch_seconds_mean": epoch_seconds(r)}


def epoch_seconds(r):
    secs = []
    for s in r["seeds"]:
        secs += json.load(open(f"{s['out']}/train_log.json")).get("epoch_seconds", [])
    return float(np.mean(secs)) if secs else None


def run_all(a, jobs):
    """Runs distill(a, *job) for every job, a.jobs at a time; results in the jobs' order."""
    from concurrent.futures import ThreadPoolExecutor
    for ds in {job[0] for job in jobs}:
        teacher_targets(a, ds)  # once per set, before the students that read it
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        return list(pool.map(lambda job: distill(a, *job), jobs))


def students(a, results):
    keys, jobs = [], []
    for ds in a.sets:
        for labelled in LABELLED:
            for name, flags in METHODS.items():
                keys.append(f"{ds}/{'all' if labelled == 0 else labelled}")
                jobs.append((ds, labelled, name, flags,
                             f"{a.work}/students/{ds}_{labelled}_{slug(name)}"))
    for key, row in zip(keys, run_all(a, jobs)):
        print(f"{key} {row['method']}: {row['mean']:.4f} +- {row['std']:.4f}", flush=True)
        results.setdefault("students", {}).setdefault(key, [])
        results["students"][key] = [r for r in results["students"][key]
                                    if r["method"] != row["method"]] + [row]


def ablation(a, results):
    ds, labelled = "fashion-mnist", 1000
    jobs = [(ds, labelled, name, ["--method", "nfkd", *flags],
             f"{a.work}/ablation/{slug(name)}") for name, flags in ABLATION.items()]
    rows = run_all(a, jobs)
    for row in rows:
        print(f"ablation {row['method']}: {row['mean']:.4f} +- {row['std']:.4f}", flush=True)
    results["ablation"] = {"set": f"{ds}/{labelled}", "rows": rows}


def linear_cka(a, b):
    """Linear CKA of two embeddings [n, k] of the same examples (Kornblith et al. 2019)."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    return float(np.linalg.norm(a.T @ b) ** 2 / (np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)))


def cka(a, results):
    """Kernel-distillation view: the student's own rank-20 NFK embedding of 1,000 test images
    against the teacher's (linear CKA), before training and after each method (seed 0)."""
    data, k = "fashion-mnist:test[:1000]", 20
    key = "fashion-mnist/1000"

    def embedding(model, name):
        path = f"{a.work}/cka/{name}.npy"
        if not os.path.exists(path):
            os.makedirs(f"{a.work}/cka", exist_ok=True)
            sh([a.nfk, "fit", "--model", model, "--kind", "classifier", "--data", data,
                "--rank", str(k), "--method", "exact", "--out", f"{a.work}/cka/{name}.nfk",
                "--embedding-out", path, "--quiet"])
        return np.load(path).astype(np.float64)

    teacher = embedding(f"{a.work}/teacher_fashion-mnist/classifier.zoo", "teacher")
    init = f"{a.work}/cka/init"
    if not os.path.exists(f"{init}/result.json"):
        sh([a.nfk, "distill", "--teacher", f"{a.work}/teacher_fashion-mnist/classifier.zoo",
            "--data", "fashion-mnist:train", "--test-data", "fashion-mnist:test", *STUDENT,
            "--epochs", "0", "--method", "none", "--out", init, "--quiet"])
    rows = [{"student": "initialisation",
             "cka": linear_cka(embedding(f"{init}/seed_0/student.zoo", "init"), teacher)}]
    for name in METHODS:
        model = f"{a.work}/students/fashion-mnist_1000_{slug(name)}/seed_0/student.zoo"
        rows.append({"student": name, "cka": linear_cka(embedding(model, slug(name)), teacher)})
        print(f"cka {name}: {rows[-1]['cka']:.4f}", flush=True)
    results["cka"] = {"set": key, "data": data, "rank": k, "rows": rows}


def report(results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    lines = []
    for key, rows in results.get("students", {}).items():
        ds = key.split("/")[0]
        lines.append(f"\n**{key}** (teacher LeNet-5: "
                     f"{results['teachers'][ds]['test_accuracy']:.4f})\n")
        lines.append("| student | test accuracy (mean ± std, 3 seeds) | per seed |")
        lines.append("|---|---|---|")
        for r in rows:
            seeds = ", ".join(f"{x:.4f}" for x in r["per_seed"])
            lines.append(f"| {r['method']} | {r['mean']:.4f} ± {r['std']:.4f} | {seeds} |")
    if "ablation" in results:
        lines.append(f"\n**ablation, NFKD, {results['ablation']['set']}**\n")
        lines.append("| setting | test accuracy |")
        lines.append("|---|---|")
        for r in results["ablation"]["rows"]:
            lines.append(f"| {r['method']} | {r['mean']:.4f} ± {r['std']:.4f} |")
    if "cka" in results:
        lines.append(f"\n**linear CKA of the student's and the teacher's rank-20 NFK embeddings "
                     f"({results['cka']['data']}, students of {results['cka']['set']}, seed 0)**\n")
        lines.append("| student | CKA with the teacher's NFK |")
        lines.append("|---|---|")
        for r in results["cka"]["rows"]:
            lines.append(f"| {r['student']} | {r['cka']:.4f} |")
    for ds, rows in results.get("probe", {}).items():
        lines.append(f"\n**teacher NFK linear probe, {ds}**: " + ", ".join(
            f"k={r['k']}: {r['test_accuracy']:.4f}" for r in rows))
    with open(os.path.join(HERE, "tables.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    if results.get("probe"):
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for ds, rows in results["probe"].items():
            ax.plot([r["k"] for r in rows], [r["test_accuracy"] for r in rows], "o-", label=ds)
        ax.set_xscale("log")
        ax.set_xlabel("k (top NFK components)")
        ax.set_ylabel("linear-probe test accuracy")
        ax.set_title("Teacher's NFK embedding (LeNet-5)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(HERE, "probe_vs_k.png"), dpi=120)
    if results.get("students"):
        keys = list(results["students"])
        fig, axes = plt.subplots(1, len(keys), figsize=(3.2 * len(keys), 3.5), squeeze=False)
        for ax, key in zip(axes[0], keys):
            rows = results["students"][key]
            ax.bar(range(len(rows)), [r["mean"] for r in rows], yerr=[r["std"] for r in rows],
                   color=["0.6", "C0", "C1", "C2"][:len(rows)])
            ax.set_xticks(range(len(rows)))
            ax.set_xticklabels(["alone", "KD", "NFKD l2", "NFKD cos"][:len(rows)], rotation=30)
            teacher = results["teachers"][key.split("/")[0]]["test_accuracy"]
            lo = min(r["mean"] - r["std"] for r in rows)
            ax.set_ylim(lo - 0.02, max([r["mean"] + r["std"] for r in rows] + [teacher]) + 0.005)
            ax.axhline(teacher, color="k", ls="--", lw=1, label="teacher (LeNet-5)")
            ax.set_title(key, fontsize=9)
        axes[0][0].set_ylabel("student test accuracy")
        axes[0][0].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(HERE, "students.png"), dpi=120)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nfk", default="build/nfk")
    p.add_argument("--work", default="/tmp/distill-work")
    p.add_argument("--phases", default="teachers,probe,students,ablation,cka,report")
    p.add_argument("--sets", default="fashion-mnist,mnist")
    p.add_argument("--jobs", type=int, default=2, help="nfk distill runs at once")
    a = p.parse_args()
    a.nfk = os.path.abspath(a.nfk)
    a.sets = a.sets.split(",")
    os.makedirs(a.work, exist_ok=True)
    path = os.path.join(HERE, "results.json")
    results = json.load(open(path)) if os.path.exists(path) else {}
    a.results = results
    results["setup"] = {
        "teacher": f"LeNet-5, Adam lr 1e-3, batch 64, {TEACHER_EPOCHS} epochs, seed 0",
        "teacher_nfk": f"nfk fit --kind classifier --rank {max(PROBE_K)} on the first "
                       f"{FIT_EXAMPLES} training images; students use its top k",
        "student": f"MLP 784-100-10 (tanh), Adam lr 1e-3, batch 64, {STUDENT_EPOCHS} epochs, "
                   f"seeds 0..{SEEDS - 1}",
        "machine": "2 CPU cores (shared), LibTorch 1.13 CPU"}
    phases = a.phases.split(",")
    for phase in ("teachers", "probe", "students", "ablation", "cka"):
        if phase in phases:
            globals()[phase](a, results)
            with open(path + ".tmp", "w") as f:
                json.dump(results, f, indent=2)
            os.replace(path + ".tmp", path)
    if "report" in phases:
        report(results)


if __name__ == "__main__":
    main()

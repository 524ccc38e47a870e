#!/usr/bin/python3
"""Steps to 97 % / 98 % on LeNet-5, at a resolution finer than an epoch: the chosen setting of each
optimizer of run.py (SGD lr 0.03, Adam lr 3e-3, K-FAC and ngd-diag with the true Fisher, K-FAC with
the empirical one) for 2 epochs on 3 seeds, `nfk train classifier --eval-every 25` (the test
accuracy on all 10,000 test images every 25 steps of 128 examples; 469 steps per epoch).

    /usr/bin/python3 results/ngd/steps.py --nfk build/nfk --work /tmp/ngd-steps --workers 2
    /usr/bin/python3 results/ngd/steps.py --work /tmp/ngd-steps --phases report

Each run writes WORK/<optimizer>/seed_S/train_log.json and is skipped when that exists. The report
writes steps.json, steps.md (the table in README.md) and ngd_steps.png here.
"""
import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from run import COMMON, NG, ROOT

HERE = os.path.dirname(os.path.abspath(__file__))
EVAL_EVERY = 25
EPOCHS = 2
SEEDS = [0, 1, 2]
TARGETS = [0.97, 0.98]
CHOSEN = {  # run.py's chosen LeNet-5 setting of each optimizer (README "Results")
    "sgd": ["--optimizer", "sgd", "--lr", "0.03", "--momentum", "0.9"],
    "adam": ["--optimizer", "adam", "--lr", "0.003"],
    "kfac": ["--optimizer", "kfac"] + NG + ["--damping", "1", "--fisher", "true",
                                           "--kl-clip", "0.001"],
    "ngd-diag": ["--optimizer", "ngd-diag"] + NG + ["--damping", "0.1", "--fisher", "true",
                                                   "--kl-clip", "0.001"],
    "kfac-empirical": ["--optimizer", "kfac"] + NG + ["--damping", "1", "--fisher", "empirical",
                                                     "--kl-clip", "0.001"],
}


def command(a, opt, seed, out):
    common = list(COMMON)
    common[common.index("--seed") + 1] = str(seed)
    return [a.nfk, "train", "classifier", "--arch", "lenet5", "--epochs", str(EPOCHS),
            "--eval-every", str(EVAL_EVERY)] + common + CHOSEN[opt] + ["--out", out]


def run_one(a, opt, seed):
    out = os.path.join(a.work, opt, f"seed_{seed}")
    if os.path.exists(os.path.join(out, "train_log.json")):
        return
    cmd = command(a, opt, seed, out)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    t0 = time.time()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        print(f"FAILED {out}: {p.stderr[-2000:]}", flush=True)
        return
    with open(os.path.join(out, "command.json"), "w") as f:
        json.dump({"command": cmd, "wall_seconds": time.time() - t0}, f)
    print(time.strftime("%H:%M:%S"), f"done {opt} seed {seed} in {time.time() - t0:.0f} s",
          flush=True)


def first(evals, target, key):
    hit = [e[key] for e in evals if e["test_accuracy"] >= target]
    return hit[0] if hit else None


def summarise(a):
    rows = []
    for opt in CHOSEN:
        seeds = []
        for seed in SEEDS:
            d = os.path.join(a.work, opt, f"seed_{seed}")
            path = os.path.join(d, "train_log.json")
            if not os.path.exists(path):
                continue
            log = json.load(open(path))
            cmd = json.load(open(os.path.join(d, "command.json")))["command"]
            ev = log["evaluations"]
            seeds.append({"seed": seed, "command": " ".join(cmd[1:]), "evaluations": ev,
                          "final_test_accuracy": log["test_accuracy"],
                          **{f"steps_to_{t:g}": first(ev, t, "step") for t in TARGETS},
                          **{f"seconds_to_{t:g}": first(ev, t, "train_seconds") for t in TARGETS}})
        rows.append({"optimizer": opt, "flags": CHOSEN[opt], "seeds": seeds})
    return rows


def cell(values, fmt):
    """mean ± std over seeds where every seed reached it, else how many did."""
    got = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(got) < len(values):
        return f"{len(got)} of {len(values)} seeds reached it"
    return f"{fmt % np.mean(got)} ± {fmt % np.std(got)} ({', '.join(fmt % v for v in got)})"


def report(a):
    rows = summarise(a)
    with open(os.path.join(HERE, "steps.json"), "w") as f:
        json.dump({"eval_every": EVAL_EVERY, "epochs": EPOCHS, "steps_per_epoch": 469,
                   "seeds": SEEDS, "rows": rows}, f, indent=1)
    lines = ["| optimizer | steps to 97 % | steps to 98 % | training s to 98 % | "
             "final test acc. (2 epochs) |", "|---|---|---|---|---|"]
    for r in rows:
        s = r["seeds"]
        lines.append(f"| {r['optimizer']} | {cell([x['steps_to_0.97'] for x in s], '%.0f')} | "
                     f"{cell([x['steps_to_0.98'] for x in s], '%.0f')} | "
                     f"{cell([x['seconds_to_0.98'] for x in s], '%.1f')} | "
                     f"{cell([x['final_test_accuracy'] for x in s], '%.4f')} |")
    with open(os.path.join(HERE, "steps.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for i, r in enumerate(rows):
        for j, s in enumerate(r["seeds"]):
            ev = s["evaluations"]
            acc = [e["test_accuracy"] for e in ev]
            kw = dict(color=f"C{i}", alpha=0.8, lw=1, label=r["optimizer"] if j == 0 else None)
            axes[0].plot([e["step"] for e in ev], acc, **kw)
            axes[1].plot([e["train_seconds"] for e in ev], acc, **kw)
    for ax, xl in zip(axes, ["step (batch 128; 469 per epoch)", "training seconds (1 thread)"]):
        ax.axhline(0.98, color="gray", ls=":", lw=1)
        ax.set_ylim(0.95, 0.995)
        ax.set_xlabel(xl)
        ax.set_ylabel("test accuracy")
        ax.legend(fontsize=8)
    fig.suptitle(f"LeNet-5 on MNIST: test accuracy every {EVAL_EVERY} steps, 3 seeds")
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "ngd_steps.png"), dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nfk", default="build/nfk")
    ap.add_argument("--work", default="/tmp/ngd-steps")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--phases", default="run,report")
    a = ap.parse_args()
    a.nfk = os.path.abspath(a.nfk)
    if "run" in a.phases:
        jobs = [(opt, seed) for seed in SEEDS for opt in CHOSEN]
        with ThreadPoolExecutor(max_workers=a.workers) as pool:
            list(pool.map(lambda j: run_one(a, *j), jobs))
    if "report" in a.phases:
        report(a)


if __name__ == "__main__":
    sys.exit(main())

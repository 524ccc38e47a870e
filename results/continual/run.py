#!/usr/bin/python3
"""Continual learning with `nfk continual`: permuted MNIST-10 (finetune, L2, EWC with each Fisher
estimator, online EWC) and split MNIST (task- and class-incremental), sized for 2 shared CPU cores.

    /usr/bin/python3 results/continual/run.py --nfk build/nfk --work /tmp/continual-work
    /usr/bin/python3 results/continual/run.py --phases report    # results.json, figures, tables.md

Every row is a chain of two nfk calls, run by --workers threads in the priority order of jobs()
(each call is skipped when its result.json exists, so a cut-off run resumes; a file `claimed`
marks a running call, and at most --workers calls run under --work, whichever instance started
them):
  1. `--lambda GRID --seed 0 --seeds 1`: nfk runs every λ on seed 0 and picks the one with the best
     mean final *validation* accuracy (10 % of each task's training examples held out);
  2. `--lambda λ* --seed 1 --seeds 2`: the chosen λ on seeds 1 and 2.
The row reports the mean ± std of the final average test accuracy over seeds 0, 1, 2 at λ*.
Three seed-0-only extensions (ewc-true-fine, ewc-batched-high, ewc-true-54k) have no second call.
"""
import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SEEDS = [0, 1, 2]
EWC_GRID = [1e1, 1e2, 1e3, 1e4, 1e5]   # EWC with the true Fisher
EST_GRID = [1e1, 1e2, 1e3]            # mc and empirical (after the true Fisher's sweep)
BATCHED_GRID = [1e2, 1e3, 1e4, 1e5]    # the squared batch-mean gradient is ~B times smaller
SPLIT_GRID = [1e1, 1e3, 1e5]
L2_GRID = [1e-2, 1e-1, 1e0]
ONLINE_GRID = [1e2, 1e3, 1e4]
GAMMA = 1.0                            # online EWC's decay (van de Ven et al. 2020 use 1)
COMMON = ["--hidden", "400,400", "--batch-size", "128", "--lr", "0.001",
          "--fisher-examples", "512", "--validation-fraction", "0.1", "--quiet"]
BENCH = {  # benchmark flags (and the network's, where a protocol changes it)
    "permuted": ["--benchmark", "permuted-mnist", "--tasks", "10", "--train-examples", "20000",
                 "--test-examples", "2000", "--epochs", "1"],
    "permuted54k": ["--benchmark", "permuted-mnist", "--tasks", "10", "--train-examples", "0",
                    "--test-examples", "2000", "--epochs", "1"],
    # The larger protocol: ReLU instead of tanh, all 54,000 training images, 2 epochs per task.
    "permuted-relu": ["--benchmark", "permuted-mnist", "--tasks", "10", "--train-examples", "0",
                      "--test-examples", "2000", "--epochs", "2", "--activation", "relu"],
    "split-task": ["--benchmark", "split-mnist", "--tasks", "5", "--scenario", "task",
                   "--epochs", "1"],
    "split-class": ["--benchmark", "split-mnist", "--tasks", "5", "--scenario", "class",
                    "--epochs", "1"],
}
RELU_GRID = [1e2, 1e3, 1e4]


def rows():
    """(row name, benchmark, method flags, λ grid), in priority order."""
    r = [("permuted/ewc-true", "permuted", ["--method", "ewc", "--fisher", "true"], EWC_GRID),
         ("permuted/finetune", "permuted", ["--method", "finetune"], [0.0])]
    for est in ["mc", "empirical", "batched"]:
        r.append((f"permuted/ewc-{est}", "permuted", ["--method", "ewc", "--fisher", est],
                  BATCHED_GRID if est == "batched" else EST_GRID))
    r += [("permuted/l2", "permuted", ["--method", "l2"], L2_GRID),
          ("permuted/online-ewc-true", "permuted",
           ["--method", "online-ewc", "--fisher", "true", "--gamma", str(GAMMA)], ONLINE_GRID)]
    for sc in ["split-task", "split-class"]:
        r += [(f"{sc}/finetune", sc, ["--method", "finetune"], [0.0]),
              (f"{sc}/l2", sc, ["--method", "l2"], L2_GRID),
              (f"{sc}/ewc-true", sc, ["--method", "ewc", "--fisher", "true"], SPLIT_GRID),
              (f"{sc}/online-ewc-true", sc,
               ["--method", "online-ewc", "--fisher", "true", "--gamma", str(GAMMA)], SPLIT_GRID)]
    # Seed 0 only, extending two sweeps: between the true Fisher's decades, above batched's top.
    r.append(("permuted/ewc-true-fine", "permuted", ["--method", "ewc", "--fisher", "true"],
              [30, 300]))
    r.append(("permuted/ewc-batched-high", "permuted", ["--method", "ewc", "--fisher", "batched"],
              [1e6, 1e7]))
    # Evidence on training per task: all 54,000 training images of each permuted task, seed 0.
    r.append(("permuted/ewc-true-54k", "permuted54k", ["--method", "ewc", "--fisher", "true"],
              [1e2]))
    # The larger protocol (after the rows above): EWC with the true Fisher, and fine-tuning.
    r.append(("permuted-relu/ewc-true", "permuted-relu", ["--method", "ewc", "--fisher", "true"],
              RELU_GRID))
    r.append(("permuted-relu/finetune", "permuted-relu", ["--method", "finetune"], [0.0]))
    # Seed 0 only: below the grid's low end, and the mc / empirical Fisher at the chosen λ.
    r.append(("permuted-relu/ewc-true-low", "permuted-relu", ["--method", "ewc", "--fisher", "true"],
              [30]))
    for est in ["mc", "empirical"]:
        r.append((f"permuted-relu/ewc-{est}-one-seed", "permuted-relu",
                  ["--method", "ewc", "--fisher", est], [1e2]))
    return r


def grid_str(grid):
    return ",".join(f"{g:g}" for g in grid)


_print_lock = threading.Lock()


def log(msg):
    with _print_lock:
        print(time.strftime("%H:%M:%S"), msg, flush=True)


def running(work):
    """Jobs claimed (running in this or another instance) under work/."""
    n = 0
    for d, _, files in os.walk(work):
        if "claimed" in files and "result.json" not in files:
            n += 1
    return n


def finish_job(out, cmd, wall, stdout=""):
    json.dump({"command": cmd, "wall_seconds": wall, "stdout": stdout[-4000:]},
              open(os.path.join(out, "job.json"), "w"), indent=1)
    os.remove(os.path.join(out, "claimed"))


def adopt(out, cmd):
    """A job whose process outlived its driver: wall time from the claim to the result."""
    c, r = os.path.join(out, "claimed"), os.path.join(out, "result.json")
    if os.path.exists(c) and os.path.exists(r) and not os.path.exists(os.path.join(out, "job.json")):
        finish_job(out, cmd, os.path.getmtime(r) - os.path.getmtime(c))


def run_job(a, out, args):
    """Runs nfk continual into out/ (claimed by an empty file while it runs)."""
    cmd = [a.nfk, "continual"] + args + ["--out", out]
    log("start " + " ".join(cmd))
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    t0 = time.time()
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    if p.returncode != 0:
        log(f"FAILED {out}: {p.stderr[-2000:]}")
        open(os.path.join(out, "failed"), "w").write(p.stderr)
        os.remove(os.path.join(out, "claimed"))
        return
    finish_job(out, cmd, wall, p.stdout)
    log(f"done  {out} in {wall:.0f} s")


def jobs():
    """(out, args or None when its grid is not done yet), in priority order: the grids and seeds
    of the permuted-MNIST EWC rows first, then the split grids, then the rest."""
    order = []
    R = {r[0]: r for r in rows()}
    first = ["permuted/ewc-true", "permuted/finetune", "permuted/ewc-mc", "permuted/ewc-empirical",
             "permuted/ewc-batched", "permuted-relu/ewc-true"]
    for name in first:
        order += [(name, "grid"), (name, "seeds12")]
    rest = [r[0] for r in rows() if r[0] not in first]
    rest = [n for n in rest if n.startswith("split")] + [n for n in rest if not n.startswith("split")]
    order += [(n, "grid") for n in rest]
    order += [(n, "seeds12") for n in sorted(rest, key=lambda n: n.startswith("split"))
              if not n.endswith(("54k", "-fine", "-high", "-low", "-one-seed"))]
    for name, kind in order:
        _, bench, flags, grid = R[name]
        base = BENCH[bench] + COMMON + flags
        out = os.path.join(WORK, name, kind)
        if kind == "grid":
            yield out, base + ["--lambda", grid_str(grid), "--seed", "0", "--seeds", "1"]
            continue
        g = os.path.join(WORK, name, "grid", "result.json")
        lam = json.load(open(g))["lambda"] if os.path.exists(g) else None
        yield out, (None if lam is None else
                    base + ["--lambda", f"{lam:g}", "--seed", "1", "--seeds", "2"])


def next_job():
    """Claims the first runnable job; None when nothing is runnable now; 'done' when all are."""
    with _claim_lock:
        pending = False
        for out, args in jobs():
            adopt(out, args and [A.nfk, "continual"] + args + ["--out", out])
            if os.path.exists(os.path.join(out, "result.json")):
                continue
            if os.path.exists(os.path.join(out, "failed")):
                continue
            pending = True
            if args is None or os.path.exists(os.path.join(out, "claimed")):
                continue
            if running(WORK) >= A.workers:
                return None
            os.makedirs(out, exist_ok=True)
            open(os.path.join(out, "claimed"), "w").close()
            return out, args
        return None if pending else "done"


def worker(a):
    while True:
        j = next_job()
        if j == "done":
            return
        if j is None:
            time.sleep(15)
            continue
        run_job(a, *j)


def phase_run(a):
    with ThreadPoolExecutor(max_workers=a.workers) as pool:
        for f in [pool.submit(worker, a) for _ in range(a.workers)]:
            f.result()


_claim_lock = threading.Lock()
WORK = A = None


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--nfk", default="build/nfk")
    ap.add_argument("--work", default="/tmp/continual-work")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--phases", default="run,report")
    a = ap.parse_args()
    A, WORK = a, a.work
    phases = a.phases.split(",")
    if "run" in phases:
        phase_run(a)
    if "report" in phases:
        sys.path.insert(0, HERE)
        import report  # noqa: E402
        report.main(a.work, rows(), BENCH, COMMON, SEEDS)

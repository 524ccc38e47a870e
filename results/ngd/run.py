#!/usr/bin/python3
"""Natural-gradient training with `nfk train classifier` on MNIST: SGD with momentum, Adam,
ngd-diag and K-FAC on the MLP and LeNet-5, each on a small grid; epochs and wall time to 97 % / 98 %
test accuracy; K-FAC with the true vs the empirical Fisher as an ablation.

    /usr/bin/python3 results/ngd/run.py --nfk build/nfk --work /tmp/ngd-work
    /usr/bin/python3 results/ngd/run.py --phases report     # results.json, figure, tables.md

Each run writes WORK/<arch>/<tag>/train_log.json and is skipped when that exists (a cut-off run
resumes; a second instance skips runs the first has claimed).
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
EPOCHS = {"mlp": 6, "lenet5": 4}
LONG = 20  # epochs of the MLP SGD/Adam/K-FAC runs that check whether 98 % is reachable
COMMON = ["--data", "mnist:train", "--test-data", "mnist:test", "--batch-size", "128",
          "--seed", "0", "--checkpoint-every", "1000", "--no-resume", "--quiet"]
# Natural-gradient settings shared by ngd-diag and kfac. With the KL clip active the update
# lr·d·sqrt(c / (lr² g·d)) does not depend on lr, so the grid is over the clip c and the damping.
NG = ["--lr", "0.1", "--momentum", "0.9", "--fisher-decay", "0.95", "--update-every", "20",
      "--inverse-every", "20"]
NG_LENET = [(0.01, 1e-3), (0.01, 1e-2), (0.1, 1e-3), (1.0, 1e-3)]  # (damping, clip)
BASE_GRIDS = {
    "sgd": [(f"lr{lr:g}", ["--lr", f"{lr:g}", "--momentum", "0.9"]) for lr in [0.01, 0.03, 0.1]],
    "adam": [(f"lr{lr:g}", ["--lr", f"{lr:g}"]) for lr in [3e-4, 1e-3, 3e-3]],
}


def ng_point(d, c):
    return (f"d{d:g}-clip{c:g}", NG + ["--damping", f"{d:g}", "--fisher", "true", "--kl-clip",
                                       f"{c:g}"])


def grid(a, arch, opt):
    """[(tag, flags)], or None while it depends on runs not done. NGD on LeNet-5: NG_LENET; on
    the MLP (a K-FAC epoch costs about 1.5x LeNet's here): only the setting chosen on LeNet-5."""
    if opt in BASE_GRIDS:
        return BASE_GRIDS[opt]
    if arch == "lenet5":
        return [ng_point(d, c) for d, c in NG_LENET]
    lenet = grid(a, "lenet5", opt)
    if not all(os.path.exists(os.path.join(run_dir(a.work, "lenet5", opt, t), "train_log.json"))
               for t, _ in lenet):
        return None
    return [ng_point(*dict(zip([t for t, _ in lenet], NG_LENET))[best_tag(a, "lenet5", opt)])]


OPTIMIZERS = ["sgd", "adam", "kfac", "ngd-diag"]
ARCHS = ["lenet5", "mlp"]
TARGETS = [0.97, 0.98]

_lock = threading.Lock()


def log(msg):
    with _lock:
        print(time.strftime("%H:%M:%S"), msg, flush=True)


def run_dir(work, arch, opt, tag):
    return os.path.join(work, arch, f"{opt}-{tag}")


def running(work):
    n = 0
    for d, _, files in os.walk(work):
        if "claimed" in files and "train_log.json" not in files:
            n += 1
    return n


def finish(out, cmd, wall):
    json.dump({"command": cmd, "wall_seconds": wall}, open(os.path.join(out, "job.json"), "w"))
    for f in os.listdir(out):  # keep only the logs (models and checkpoints are large)
        if f.endswith(".pt") or f == "checkpoint":
            subprocess.run(["rm", "-rf", os.path.join(out, f)])
    os.remove(os.path.join(out, "claimed"))


def adopt(out, cmd):
    """A run whose process outlived its driver: wall time from the claim to the log."""
    c, r = os.path.join(out, "claimed"), os.path.join(out, "train_log.json")
    if os.path.exists(c) and os.path.exists(r) and not os.path.exists(os.path.join(out, "job.json")):
        finish(out, cmd, os.path.getmtime(r) - os.path.getmtime(c))


def command(a, arch, opt, flags, out, epochs=None):
    optimizer = {"kfac-empirical": "kfac", "sgd-long": "sgd", "adam-long": "adam",
                 "kfac-long": "kfac"}.get(opt, opt)
    return [a.nfk, "train", "classifier", "--arch", arch, "--optimizer", optimizer, "--epochs",
            str(epochs or EPOCHS[arch])] + COMMON + flags + ["--out", out]


def jobs(a):
    """(out, command or None while it waits on another run), in priority order."""
    for arch in ARCHS:
        for opt in OPTIMIZERS:
            g = grid(a, arch, opt)
            if g is None:
                yield run_dir(a.work, arch, opt, "pending"), None
                continue
            for tag, flags in g:
                out = run_dir(a.work, arch, opt, tag)
                yield out, command(a, arch, opt, flags, out)
        # Ablation: K-FAC with the empirical Fisher at the true-Fisher run's chosen clip.
        g = grid(a, arch, "kfac") or []
        done = bool(g) and all(os.path.exists(os.path.join(run_dir(a.work, arch, "kfac", t),
                                                           "train_log.json")) for t, _ in g)
        tag = best_tag(a, arch, "kfac") if done else None
        if tag is None:
            yield run_dir(a.work, arch, "kfac-empirical", "pending"), None
            continue
        flags = [("empirical" if f == "true" else f) for f in dict(g)[tag]]
        out = run_dir(a.work, arch, "kfac-empirical", tag)
        yield out, command(a, arch, "kfac-empirical", flags, out)
    # Does the MLP reach 98 % at all, and when? SGD, Adam and K-FAC at their chosen setting,
    # LONG epochs (K-FAC's added last: it costs ~2x their epoch).
    for opt in ["sgd", "adam", "kfac"]:
        tag = best_tag(a, "mlp", opt)
        if tag is not None:
            out = run_dir(a.work, "mlp", opt + "-long", tag)
            yield out, command(a, "mlp", opt + "-long", dict(grid(a, "mlp", opt))[tag], out, LONG)


def next_job(a):
    with _claim_lock:
        pending = False
        for out, cmd in jobs(a):
            adopt(out, cmd)
            if os.path.exists(os.path.join(out, "train_log.json")) or \
                    os.path.exists(os.path.join(out, "failed")):
                continue
            pending = True
            if cmd is None or os.path.exists(os.path.join(out, "claimed")):
                continue
            if running(a.work) >= a.workers:
                return None
            os.makedirs(out, exist_ok=True)
            open(os.path.join(out, "claimed"), "w").close()
            return out, cmd
        return None if pending else "done"


def worker(a):
    while True:
        j = next_job(a)
        if j == "done":
            return
        if j is None:
            time.sleep(15)
            continue
        out, cmd = j
        log("start " + " ".join(cmd))
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        t0 = time.time()
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.time() - t0
        if p.returncode != 0 or not os.path.exists(os.path.join(out, "train_log.json")):
            log(f"FAILED {out}: {p.stderr[-2000:]}")
            open(os.path.join(out, "failed"), "w").write(p.stderr)
            os.remove(os.path.join(out, "claimed"))
            continue
        finish(out, cmd, wall)
        log(f"done  {out} in {wall:.0f} s")


_claim_lock = threading.Lock()


def reach(log_json, target):
    """(epochs, seconds of training steps) to the first epoch with test accuracy >= target."""
    secs = 0.0
    for e, s in zip(log_json["epochs"], log_json["epoch_seconds"]):
        secs += s
        if e["test_accuracy"] >= target:
            return e["epoch"], secs
    return None, None


def best_tag(a, arch, opt):
    """The grid point reaching 98 % first (then 97 %), else the best final test accuracy."""
    scored = []
    for tag, _ in grid(a, arch, opt) or []:
        f = os.path.join(run_dir(a.work, arch, opt, tag), "train_log.json")
        if not os.path.exists(f):
            continue
        lj = json.load(open(f))
        e98 = reach(lj, 0.98)[0]
        e97 = reach(lj, 0.97)[0]
        final = lj["epochs"][-1]["test_accuracy"]
        scored.append(((e98 or 1e9, e97 or 1e9, -final), tag))
    return min(scored)[1] if scored else None


def phase_run(a):
    with ThreadPoolExecutor(max_workers=a.workers) as pool:
        for f in [pool.submit(worker, a) for _ in range(a.workers)]:
            f.result()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--nfk", default="build/nfk")
    ap.add_argument("--work", default="/tmp/ngd-work")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--phases", default="run,report")
    a = ap.parse_args()
    if "run" in a.phases.split(","):
        phase_run(a)
    if "report" in a.phases.split(","):
        sys.path.insert(0, HERE)
        import report  # noqa: E402
        report.main(a, grid, OPTIMIZERS, ARCHS, TARGETS, EPOCHS, COMMON, best_tag, reach,
                    run_dir)

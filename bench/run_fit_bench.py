#!/usr/bin/python3
"""Times `nfk fit` (k = 32, 10 power iterations, float32) for each net, N and method, with
repeats, peak RSS of each run, device and commit; runs the functorch Alg. 4 reference in the same
job, and checks the fast path's top-k singular values against the float64 exact answer.
Writes one JSON file. The networks are untrained zoo archives (bench/bench_tool.cpp, seeded);
LeNet-5 runs on MNIST, the 32×32×3 nets on seeded uniform noise images.

Usage (from the repository root, after building):
  bench/run_fit_bench.py --out bench/results/cpu.json [--plan small|full] [--repeats 2]
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NFK = os.path.join(ROOT, "build", "nfk")  # --build DIR replaces "build"
TOOL = os.path.join(ROOT, "build", "nfk_bench")

# (net, kind, data, log2 N values, methods) per plan. The CPU plan keeps N small enough that the
# whole job takes minutes on two cores; the full plan is the 2^10..2^16 (for a GPU).
PLANS = {
    "small": [
        ("lenet5", "classifier", "mnist", [10, 11, 12], ["per-example", "per-example-stream", "sketch"]),
        ("lenet5", "classifier", "mnist", [7, 8], ["matrix-free"]),
        ("dcgan-d", "score", "noise", [9, 10], ["per-example"]),
        ("wrn-40-2", "classifier", "noise", [5, 6], ["per-example"]),
    ],
    "full": [
        ("lenet5", "classifier", "mnist", list(range(10, 17)),
         ["per-example", "per-example-stream", "sketch", "matrix-free"]),
        ("dcgan-d", "score", "noise", list(range(10, 17)), ["per-example", "matrix-free"]),
        ("wrn-40-2", "classifier", "noise", list(range(10, 17)), ["per-example", "matrix-free"]),
    ],
}
FUNCTORCH_LOG2N = {"small": [8], "full": list(range(10, 17))}
# Bench method names → `nfk fit` flags: "per-example" lets V stay resident (it fits the default
# 4 GiB budget up to N = 2^14 on LeNet-5); "per-example-stream" forces V's blocks to be recomputed
# on every pass (memory flat in N); "sketch" reads V once (single-pass sketch).
METHOD_FLAGS = {
    "per-example": ["--method", "per-example"],
    "per-example-stream": ["--method", "per-example", "--memory-budget", "0"],
    "sketch": ["--method", "sketch"],
    "matrix-free": ["--method", "matrix-free"],
    "exact": ["--method", "exact"],
}


def peak_rss_cmd(cmd):
    """Runs cmd; returns (seconds, the child's own peak RSS in MiB from wait4, stdout, stderr)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    if status != 0:
        sys.exit("failed: %s\n%s" % (" ".join(cmd), err.decode()[-2000:]))
    return seconds, usage.ru_maxrss / 1024, out.decode(), err.decode()


def spectrum(projector):
    out = subprocess.run([NFK, "spectrum", "--projector", projector, "--json"], check=True,
                         capture_output=True).stdout
    return json.loads(out)["singular_values"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--plan", choices=sorted(PLANS), default="small")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--power-iters", type=int, default=10)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="folder with nfk, nfk_bench")
    ap.add_argument("--methods", nargs="*", help="only these bench methods (default: the plan's)")
    ap.add_argument("--skip-functorch", action="store_true", help="leave out the Alg. 4 reference")
    a = ap.parse_args()
    global NFK, TOOL
    NFK, TOOL = os.path.join(a.build, "nfk"), os.path.join(a.build, "nfk_bench")

    work = tempfile.mkdtemp(prefix="nfk_bench_")
    subprocess.run([TOOL, "make-models", work], check=True)
    max_log2n = max(max(p[3]) for p in PLANS[a.plan])
    noise = os.path.join(work, "noise.npy")
    rng = np.random.default_rng(0)
    np.save(noise, rng.random((2 ** max_log2n, 3, 32, 32), dtype=np.float32))
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip() != ""
    report = {
        "commit": commit + ("-dirty" if dirty else ""),
        "device": a.device, "host": platform.node(), "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "plan": a.plan, "rank": a.rank, "power_iters": a.power_iters,
        "dtype": "float32", "repeats": a.repeats, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "runs": [], "functorch": [], "accuracy": None,
    }

    def fit_cmd(net, kind, data, n, method, out, dtype="float32", batch=256):
        src = ("mnist:train" if data == "mnist" else noise) + "[:%d]" % n
        return [NFK, "fit", "--model", os.path.join(work, net + ".pt"), "--kind", kind,
                "--data", src, "--rank", str(a.rank), "--power-iters", str(a.power_iters),
                *METHOD_FLAGS[method], "--estimator", "empirical", "--dtype", dtype,
                "--device", a.device, "--batch-size", str(batch), "--out", out, "--quiet"]

    for net, kind, data, log2ns, methods in PLANS[a.plan]:
        batch = {"lenet5": 256, "dcgan-d": 64, "wrn-40-2": 16}[net]
        for method in methods:
            if a.methods and method not in a.methods:
                continue
            for log2n in log2ns:
                n = 2 ** log2n
                times, rss = [], []
                for _ in range(a.repeats):
                    out = os.path.join(work, "p.nfk")
                    s, m, _, _ = peak_rss_cmd(fit_cmd(net, kind, data, n, method, out, batch=batch))
                    times.append(s)
                    rss.append(m)
                row = {"net": net, "method": method, "n": n, "batch_size": batch,
                       "seconds": times, "min_s": min(times), "median_s": float(np.median(times)),
                       "peak_rss_mib": max(rss), "examples_per_s": n / min(times)}
                report["runs"].append(row)
                print(json.dumps(row), flush=True)

    for log2n in [] if a.skip_functorch else FUNCTORCH_LOG2N[a.plan]:
        times, last = [], None
        for _ in range(a.repeats):
            s, m, out, _ = peak_rss_cmd([sys.executable, os.path.join(ROOT, "bench", "functorch_alg4.py"),
                                         "--n", str(2 ** log2n), "--rank", str(a.rank),
                                         "--power-iters", str(a.power_iters)])
            last = json.loads(out)
            times.append(s)
        last.pop("singular_values")
        last.update({"process_seconds": times, "min_s": min(times), "peak_rss_mib_process": m})
        report["functorch"].append(last)
        print(json.dumps(last), flush=True)

    # Accuracy: fast path (per-example, float32) vs exact float64, LeNet-5, N = 1024.
    fast, exact = os.path.join(work, "fast.nfk"), os.path.join(work, "exact.nfk")
    subprocess.run(fit_cmd("lenet5", "classifier", "mnist", 1024, "per-example", fast), check=True)
    subprocess.run(fit_cmd("lenet5", "classifier", "mnist", 1024, "exact", exact, dtype="float64"),
                   check=True)
    sf, se = np.array(spectrum(fast)), np.array(spectrum(exact))
    rel = np.abs(sf - se) / se
    report["accuracy"] = {"net": "lenet5", "n": 1024, "fast": "per-example float32",
                          "reference": "exact float64", "max_rel_err_top_k": float(rel.max()),
                          "rel_err": rel.tolist(), "exact_singular_values": se.tolist()}
    print(json.dumps({"accuracy_max_rel_err": float(rel.max())}), flush=True)
    # The default 10 extra probes leave closely spaced tail values short; 32 resolve them.
    cmd = fit_cmd("lenet5", "classifier", "mnist", 1024, "per-example", fast)
    subprocess.run(cmd[:-1] + ["--oversample", "32", "--quiet"], check=True)
    rel = np.abs(np.array(spectrum(fast)) - se) / se
    report["accuracy_oversample_32"] = {
        "net": "lenet5", "n": 1024, "fast": "per-example float32, oversample 32",
        "reference": "exact float64", "max_rel_err_top_k": float(rel.max()), "rel_err": rel.tolist()}
    print(json.dumps({"accuracy_oversample_32_max_rel_err": float(rel.max())}), flush=True)
    # The single-pass sketch (no power iterations) at the default and at a larger oversample.
    report["accuracy_sketch"] = []
    for oversample in (10, 96):
        cmd = fit_cmd("lenet5", "classifier", "mnist", 1024, "sketch", fast)
        subprocess.run(cmd[:-1] + ["--oversample", str(oversample), "--quiet"], check=True)
        rel = np.abs(np.array(spectrum(fast)) - se) / se
        row = {"net": "lenet5", "n": 1024, "fast": "sketch float32, oversample %d" % oversample,
               "reference": "exact float64", "max_rel_err_top_k": float(rel.max()),
               "rel_err": rel.tolist()}
        report["accuracy_sketch"].append(row)
        print(json.dumps({"accuracy_sketch_oversample_%d_max_rel_err" % oversample: float(rel.max())}),
              flush=True)
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()

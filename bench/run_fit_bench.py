#!/usr/bin/python3
"""Times `nfk fit` (k = 32, 10 power iterations, float32) for each net, N and method, with
repeats, peak RSS (and peak CUDA memory) of each run, device and commit; runs the functorch Alg. 4
reference in the same job, and checks the fast path's top-k singular values against the float64
exact answer. Times are the fit's own (`nfk fit --json`: data and model loaded, the device
synchronised; the process time with start-up and loading is kept beside it), with the fit's
stages (Fisher statistics, per-example gradients, products, factorizations) and the device's
measured GEMM and copy rates, so that each run's fraction of them can be read off.
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

from table import rates  # bench/table.py: the rates and fractions of the ceilings

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NFK = os.path.join(ROOT, "build", "nfk")  # --build DIR replaces "build"
TOOL = os.path.join(ROOT, "build", "nfk_bench")

# (net, kind, data, log2 N values, methods) per plan. The CPU plan keeps N small enough that the
# whole job takes minutes on two cores; the full plan is the 2^10..2^16 (for a GPU).
PLANS = {
    "small": [
        ("lenet5", "classifier", "mnist", [10, 11, 12],
         ["per-example", "per-example-os32", "per-example-stream", "sketch"]),
        ("lenet5", "classifier", "mnist", [7, 8], ["matrix-free"]),
        ("dcgan-d", "score", "noise", [9, 10], ["per-example"]),
        ("wrn-40-2", "classifier", "noise", [5, 6], ["per-example"]),
    ],
    # What fits one lent GPU's 30 device-minutes (two 10-minute calls, `--nets` splitting them):
    # every LeNet-5 method over the whole range, the larger nets where a run takes seconds.
    "gpu": [
        ("lenet5", "classifier", "mnist", list(range(10, 17)),
         ["per-example", "per-example-os32", "per-example-stream", "sketch"]),
        ("lenet5", "classifier", "mnist", list(range(10, 14)), ["matrix-free"]),
        ("dcgan-d", "score", "noise", list(range(10, 17)), ["per-example"]),
        ("dcgan-d", "score", "noise", list(range(10, 13)), ["matrix-free"]),
        ("wrn-40-2", "classifier", "noise", list(range(10, 13)), ["per-example"]),
    ],
    "full": [
        ("lenet5", "classifier", "mnist", list(range(10, 17)),
         ["per-example", "per-example-os32", "per-example-stream", "sketch", "matrix-free"]),
        ("dcgan-d", "score", "noise", list(range(10, 17)), ["per-example", "matrix-free"]),
        ("wrn-40-2", "classifier", "noise", list(range(10, 17)), ["per-example", "matrix-free"]),
    ],
}
FUNCTORCH_LOG2N = {"small": [8], "gpu": list(range(10, 17)), "full": list(range(10, 17))}
ACCURACY_N = {"small": [1024], "gpu": [1024, 4096, 16384], "full": [1024, 4096, 16384]}
# Bench method names → `nfk fit` flags: "per-example" lets V stay resident (it fits the default
# 4 GiB budget up to N = 2^14 on LeNet-5); "per-example-stream" forces V's blocks to be recomputed
# on every pass (memory flat in N); "sketch" reads V once (single-pass sketch).
# Examples per batch: a GPU wants larger batches to fill it (the functorch reference gets the same).
BATCH = {"cpu": {"lenet5": 256, "dcgan-d": 64, "wrn-40-2": 16},
         "cuda": {"lenet5": 2048, "dcgan-d": 512, "wrn-40-2": 64}}
METHOD_FLAGS = {
    "per-example": ["--method", "per-example"],
    "per-example-stream": ["--method", "per-example", "--memory-budget", "1"],
    # 32 extra probes instead of 10: what the 2e-4 accuracy check needs on LeNet-5's flat tail.
    "per-example-os32": ["--method", "per-example", "--oversample", "32"],
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


def device_peaks(device):
    """The device's measured ceilings, float32 without TF32: a square GEMM's best GFLOP/s and a
    large copy's GB/s (bytes read + written), with the torch the bench's Python has."""
    import torch
    torch.backends.cuda.matmul.allow_tf32 = False
    dev = torch.device(device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def best(fn, reps):
        fn()
        times = []
        for _ in range(reps):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            times.append(time.perf_counter() - t0)
        return min(times)

    m = 8192 if dev.type == "cuda" else 2048
    a = torch.randn(m, m, device=dev)
    b = torch.randn(m, m, device=dev)
    gemm = 2 * m ** 3 / best(lambda: a.mm(b), 5) * 1e-9
    big = torch.empty((1 << 30 if dev.type == "cuda" else 1 << 27) // 4, device=dev)
    copy = 2 * big.numel() * 4 / best(lambda: big.clone(), 5) * 1e-9
    return {"gemm_gflops": gemm, "gemm_size": m, "copy_gbs": copy, "torch": torch.__version__,
            "name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else cpu_name()}


def cpu_name():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


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
    ap.add_argument("--nets", nargs="*", help="only these nets (default: the plan's)")
    ap.add_argument("--max-log2n", type=int, help="leave out runs with N above 2^this")
    ap.add_argument("--skip-accuracy", action="store_true", help="leave out the float64 checks")
    ap.add_argument("--skip-runs", action="store_true", help="leave out the timed fits")
    ap.add_argument("--skip-functorch", action="store_true", help="leave out the Alg. 4 reference")
    ap.add_argument("--memory-budget", type=int, help="MiB a resident V may take (nfk fit "
                    "--memory-budget; default 4096 on the CPU, 49152 on CUDA)")
    a = ap.parse_args()
    global NFK, TOOL
    NFK, TOOL = os.path.join(a.build, "nfk"), os.path.join(a.build, "nfk_bench")

    device_kind = "cuda" if a.device.startswith("cuda") else "cpu"
    budget = a.memory_budget or {"cuda": 49152, "cpu": 4096}[device_kind]
    work = tempfile.mkdtemp(prefix="nfk_bench_")
    subprocess.run([TOOL, "make-models", work], check=True)
    max_log2n = max(max(p[3]) for p in PLANS[a.plan])
    if a.max_log2n is not None:
        max_log2n = min(max_log2n, a.max_log2n)
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
        "dtype": "float32", "repeats": a.repeats, "memory_budget_mib": budget,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "device_peaks": device_peaks(a.device),
        "runs": [], "functorch": [], "accuracy": [],
    }

    def fit_cmd(net, kind, data, n, method, out, dtype="float32", batch=256, budget_mib=None,
                extra=()):
        src = ("mnist:train" if data == "mnist" else noise) + "[:%d]" % n
        flags = METHOD_FLAGS[method]  # streaming brings its own budget (0)
        if "--memory-budget" not in flags:
            flags = flags + ["--memory-budget", str(budget_mib or budget)]
        return [NFK, "fit", "--model", os.path.join(work, net + ".pt"), "--kind", kind,
                "--data", src, "--rank", str(a.rank), "--power-iters", str(a.power_iters), *flags,
                "--estimator", "empirical", "--dtype", dtype, "--device", a.device,
                "--batch-size", str(batch), "--out", out, "--quiet", "--json", *extra]

    def save():  # after every row: a run cut short still leaves what it measured
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, a.out)

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    for net, kind, data, log2ns, methods in [] if a.skip_runs else PLANS[a.plan]:
        batch = BATCH[device_kind][net]
        if a.nets and net not in a.nets:
            continue
        for method in methods:
            if a.methods and method not in a.methods:
                continue
            for log2n in log2ns:
                if a.max_log2n is not None and log2n > a.max_log2n:
                    continue
                n = 2 ** log2n
                times, process, rss, fits = [], [], [], []
                for _ in range(a.repeats):
                    out = os.path.join(work, "p.nfk")
                    s, m, stdout, _ = peak_rss_cmd(fit_cmd(net, kind, data, n, method, out, batch=batch))
                    fits.append(json.loads(stdout))
                    times.append(fits[-1]["profile"]["total_s"])
                    process.append(s)
                    rss.append(m)
                best = fits[int(np.argmin(times))]
                prof = best["profile"]
                peak_device = [f["profile"]["peak_device_bytes"] for f in fits]
                row = {"net": net, "method": method, "n": n, "n_params": best["spectrum"]["n_params"],
                       "batch_size": batch,
                       "seconds": times, "min_s": min(times), "median_s": float(np.median(times)),
                       "process_seconds": process, "peak_rss_mib": max(rss),
                       "peak_device_mib": (max(peak_device) / 2**20 if peak_device[0] is not None
                                           else None),
                       "examples_per_s": n / min(times), "method_note": best["method_note"],
                       "profile": prof}
                row.update(rates(row, report["device_peaks"]))
                report["runs"].append(row)
                print(json.dumps(row), flush=True)
                save()

    for log2n in [] if a.skip_functorch else FUNCTORCH_LOG2N[a.plan]:
        if a.max_log2n is not None and log2n > a.max_log2n:
            continue
        times, process, last = [], [], None
        for _ in range(a.repeats):
            s, m, out, _ = peak_rss_cmd([sys.executable, os.path.join(ROOT, "bench", "functorch_alg4.py"),
                                         "--n", str(2 ** log2n), "--rank", str(a.rank),
                                         "--power-iters", str(a.power_iters), "--device", a.device,
                                         "--batch-size", str(BATCH[device_kind]["lenet5"])])
            last = json.loads(out)
            times.append(last["seconds"])
            process.append(s)
        last.pop("singular_values")
        last.update({"fit_seconds": times, "min_s": min(times), "process_seconds": process,
                     "peak_rss_mib_process": m})
        report["functorch"].append(last)
        print(json.dumps(last), flush=True)
        save()

    # Accuracy: the fast path (per-example, float32) against the exact answer in float64 on
    # LeNet-5; the default 10 extra probes leave closely spaced tail values short, 32 resolve them.
    fast, exact = os.path.join(work, "fast.nfk"), os.path.join(work, "exact.nfk")
    report["accuracy"] = []
    for n in [] if a.skip_accuracy else ACCURACY_N[a.plan]:
        if a.max_log2n is not None and n > 2 ** a.max_log2n:
            continue
        # Exact keeps V in float64 (N·P·8 bytes) and its Gram matrix: give it the room.
        exact_budget = max(budget, 2 * n * 61706 * 8 >> 20)
        subprocess.run(fit_cmd("lenet5", "classifier", "mnist", n, "exact", exact, dtype="float64",
                               budget_mib=exact_budget), check=True, capture_output=True)
        se = np.array(spectrum(exact))

        def compare(method, oversample):
            subprocess.run(fit_cmd("lenet5", "classifier", "mnist", n, method, fast,
                                   extra=["--oversample", str(oversample)]),
                           check=True, capture_output=True)
            rel = np.abs(np.array(spectrum(fast)) - se) / se
            row = {"net": "lenet5", "n": n,
                   "fast": "%s float32, oversample %d" % (method, oversample),
                   "reference": "exact float64", "max_rel_err_top_k": float(rel.max()),
                   "rel_err": rel.tolist(), "exact_singular_values": se.tolist()}
            report["accuracy"].append(row)
            print(json.dumps({k: row[k] for k in ("n", "fast", "max_rel_err_top_k")}), flush=True)
            save()

        for oversample in (10, 32):
            compare("per-example", oversample)
        if n == 1024:  # the single-pass sketch (no power iterations), default and large oversample
            for oversample in (10, 96):
                compare("sketch", oversample)
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Issue 17, one run side by side: nfk fit (V resident, and streamed with --memory-budget 1)
against what a PyTorch user writes (bench/pytorch_user.py: vmap(grad) per-sample gradients + the
randomized SVD by GEMMs, resident and streamed) on the bench's nets (bench/user_nets.py: LeNet-5
trained one epoch on MNIST; the DCGAN discriminator and WRN-40-2 as initialised, on the fit
bench's noise images), k = 32, float32, CPU; each run's top-32 σ against the exact float64 SVD
(`nfk fit --method exact --dtype float64`, the Gram's eigendecomposition) of the same model and
data; the passes over V each made; and the time to accuracy: nfk's fit stops by its own estimate,
the user's fixed-L run is also read after every iteration (its trace), so the table gives both
the user's time at L = 10 and the time of the smallest L that reached the target. Runs are
interleaved (nfk, user, nfk, user, ...) so that a shared machine's load falls on both alike; the
load average is recorded before and after.

Usage (from the repository root, after building nfk):
  bench/run_passes_bench.py --out bench/results/passes_cpu.json [--nets lenet5:2048,4096
      dcgan-d:2048 wrn-40-2:256] [--repeats 2] [--streamed-repeats 1]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from run_fit_bench import cpu_name, device_peaks, peak_rss_cmd

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
NFK = os.path.join(ROOT, "build", "nfk")
USER = os.path.join(ROOT, "bench", "pytorch_user.py")
TARGET = 2e-4  # SPEC §5: top-32 σ within 2e-4 of float64 exact
# net → (nfk --kind, examples per batch on the CPU, what the parameters are)
NETS = {"lenet5": ("classifier", 256, "LeNet-5 (61,706 parameters), trained one epoch (Adam, "
                   "batch 64) on the first 10,000 MNIST training images; MNIST training images"),
        "dcgan-d": ("score", 64, "DCGAN discriminator (width 64, 3×32×32: 142,529 parameters), "
                    "seeded, as initialised; uniform noise images"),
        "wrn-40-2": ("classifier", 16, "WRN-40-2 (2,243,546 parameters), seeded, as initialised; "
                     "uniform noise images")}


def spectrum(projector):
    out = subprocess.run([NFK, "spectrum", "--projector", projector, "--json"], check=True,
                         capture_output=True).stdout
    return np.array(json.loads(out)["singular_values"])


def max_rel_err(sigma, truth):
    return float((np.abs(np.asarray(sigma) - truth) / truth).max())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--nets", nargs="*", default=["lenet5:2048,4096", "dcgan-d:2048",
                                                  "wrn-40-2:256"],
                    help="NET:N[,N...] (nets: %s)" % ", ".join(NETS))
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--streamed-repeats", type=int, default=1)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--user-oversample", type=int, default=32,
                    help="the baseline's oversampling (32: what reaches 2e-4 at 10 iterations)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="nfk_passes_")
    ceilings = cpu_ceilings()
    floor_s.copy_gbs = ceilings["copy_gbs"]
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip() != ""
    report = {"commit": commit + ("-dirty" if dirty else ""), "cpu": cpu_name(),
              "cpu_count": os.cpu_count(), "device": "cpu", "rank": a.rank, "dtype": "float32",
              "repeats": a.repeats, "streamed_repeats": a.streamed_repeats,
              "target_max_rel_err": TARGET, "user_oversample": a.user_oversample,
              "models": {net: NETS[net][2] for net in NETS},
              "load_avg_start": os.getloadavg(), "ceilings": ceilings,
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": []}

    def save():
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, a.out)

    for spec in a.nets:
        net, ns = spec.split(":")
        kind, batch, _ = NETS[net]
        model = os.path.join(work, net + "_ts.pt")
        subprocess.run([sys.executable, USER, "--make-model", model, "--net", net], check=True)
        data = None
        if net != "lenet5":
            data = os.path.join(work, "noise.npy")
            subprocess.run([sys.executable, USER, "--net", net, "--n", str(max(map(int, ns.split(",")))),
                            "--save-noise", data], check=True)

        def nfk_fit(n, out, extra):
            src = ("mnist:train" if data is None else data) + "[:%d]" % n
            cmd = [NFK, "fit", "--model", model, "--kind", kind, "--data", src,
                   "--rank", str(a.rank), "--estimator", "empirical", "--batch-size", str(batch),
                   "--out", out, "--quiet", "--json", *extra]
            s, rss, stdout, _ = peak_rss_cmd(cmd)
            return json.loads(stdout), s, rss

        for n in map(int, ns.split(",")):
            ref_path = os.path.join(work, "ref.nfk")
            ref, ref_s, _ = nfk_fit(n, ref_path, ["--dtype", "float64", "--method", "exact",
                                                  "--memory-budget", "16384"])
            truth = spectrum(ref_path)
            report["rows"].append({"net": net, "n": n, "impl": "reference",
                                   "what": "nfk fit --method exact --dtype float64",
                                   "seconds": ref_s, "singular_values": truth.tolist()})
            save()
            runs = {}
            for rep in range(a.repeats):
                for mode in ("resident", "streamed"):
                    if mode == "streamed" and rep >= a.streamed_repeats:
                        continue
                    out = os.path.join(work, "p.nfk")
                    extra = ["--memory-budget", "16384" if mode == "resident" else "1"]
                    fit, process_s, rss = nfk_fit(n, out, extra)
                    err = max_rel_err(spectrum(out), truth)
                    runs.setdefault(("nfk", mode), []).append(
                        {"seconds": fit["profile"]["total_s"], "process_seconds": process_s,
                         "peak_rss_mib": rss, "passes": fit["profile"]["passes"],
                         "iterations": fit["profile"]["iterations"],
                         "estimated_error": fit["profile"]["estimated_error"],
                         "max_rel_err": err, "profile": fit["profile"],
                         "method": fit["plan"].get("method"), "svd": fit["plan"].get("svd"),
                         "method_note": fit["method_note"],
                         "to_target_s": fit["profile"]["total_s"] if err <= TARGET else None,
                         "floor_s": floor_s(fit), "v_bytes": fit["plan"]["v_bytes"],
                         "gemm_floor_s": fit["profile"]["product_flops"] /
                         (ceilings["gemm_gflops"] * 1e9)})
                    s, rss, stdout, _ = peak_rss_cmd([sys.executable, USER, "--model", model,
                                                      "--net", net, "--n", str(n), "--mode", mode,
                                                      "--batch-size", str(batch),
                                                      "--oversample", str(a.user_oversample)])
                    user = json.loads(stdout)
                    err = max_rel_err(user.pop("singular_values"), truth)
                    reached = [t for t in user["trace"]
                               if max_rel_err(t["singular_values"], truth) <= TARGET]
                    for t in user["trace"]:
                        t["max_rel_err"] = max_rel_err(t.pop("singular_values"), truth)
                    user.update({"process_seconds": s, "peak_rss_mib": rss, "max_rel_err": err,
                                 "to_target_s": reached[0]["seconds"] if reached else None,
                                 "to_target_iterations":
                                     reached[0]["iterations"] if reached else None})
                    runs.setdefault(("pytorch-user", mode), []).append(user)
                    print(json.dumps({"net": net, "n": n, "mode": mode,
                                      "nfk_s": runs[("nfk", mode)][-1]["seconds"],
                                      "user_s": user["seconds"],
                                      "user_to_target_s": user["to_target_s"]}), flush=True)
            for (impl, mode), rs in runs.items():
                times = [r["seconds"] for r in rs]
                targets = [r["to_target_s"] for r in rs]
                report["rows"].append({
                    "net": net, "n": n, "impl": impl, "mode": mode, "runs": rs,
                    "min_s": min(times), "median_s": float(np.median(times)),
                    "to_target_min_s": None if None in targets else min(targets),
                    "passes": rs[0]["passes"],
                    "max_rel_err": max(r["max_rel_err"] for r in rs)})
            save()
    report["load_avg_end"] = os.getloadavg()
    report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save()
    print_table(report)


def cpu_ceilings():
    """The GEMM and copy ceilings with every CPU's thread, as nfk and the user's code run."""
    import torch
    torch.set_num_threads(os.cpu_count())
    return dict(device_peaks("cpu"), threads=torch.get_num_threads())


def remeasure_ceilings(path):
    """Re-measures the ceilings and recomputes each nfk run's floors in a saved report (the
    timings are left as they are)."""
    with open(path) as f:
        report = json.load(f)
    report["ceilings"] = cpu_ceilings()
    report["ceilings_measured"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    floor_s.copy_gbs = report["ceilings"]["copy_gbs"]
    for row in report["rows"]:
        for run in row.get("runs", []):
            if "floor_s" in run:
                fit = {"profile": run["profile"], "plan": {"v_bytes": run["v_bytes"]}}
                run["floor_s"] = floor_s(fit)
                run["gemm_floor_s"] = (run["profile"]["product_flops"] /
                                       (report["ceilings"]["gemm_gflops"] * 1e9))
    with open(path + ".tmp", "w") as f:
        json.dump(report, f, indent=1)
    os.replace(path + ".tmp", path)
    print_table(report)


def floor_s(fit):
    """The copy-rate floor of the products: each pass over V reads its bytes once, at the rate
    a large copy moves bytes (read + written); the products stage can go no faster."""
    return fit["profile"]["passes"] * fit["plan"]["v_bytes"] / (floor_s.copy_gbs * 1e9)


def print_table(report):
    """One row per (net, N, mode, implementation). "user / nfk" at L = 10 compares the fit
    times; "to 2e-4" compares the times to reach the target: nfk's whole fit (it stops by its
    own estimate), the user's smallest L that got there (read from its trace, which a user
    could only choose knowing the exact answer)."""
    print("| net | N | mode | implementation | fit s (min) | median | passes over V | max rel. err. "
          "top-32 σ | s to 2e-4 | user / nfk, L = 10 | user / nfk, to 2e-4 | products s | "
          "copy floor s | GEMM floor s |")
    print("|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = [r for r in report["rows"] if r.get("impl") in ("nfk", "pytorch-user")]
    for r in rows:
        other = [x for x in rows if x.get("net", "lenet5") == r.get("net", "lenet5") and
                 x["n"] == r["n"] and x["mode"] == r["mode"] and x["impl"] != r["impl"]]
        fixed = to_target = ""
        if r["impl"] == "nfk" and other:
            user = other[0]
            fixed = "%.2f×" % (user["min_s"] / r["min_s"])
            if user.get("to_target_min_s") and r.get("to_target_min_s"):
                to_target = "%.2f×" % (user["to_target_min_s"] / r["to_target_min_s"])
        best = min(r["runs"], key=lambda x: x["seconds"])
        products = best.get("profile", {}).get("products_s")
        floor = best.get("floor_s")
        gemm = best.get("gemm_floor_s")
        target = r.get("to_target_min_s")
        if target is not None and r["impl"] == "pytorch-user":
            its = min(x["to_target_iterations"] for x in r["runs"])
            target_text = "%.2f (L = %d)" % (target, its)
        else:
            target_text = "%.2f" % target if target is not None else "not reached"
        print("| %s | %d | %s | %s | %.2f | %.2f | %d | %.1e | %s | %s | %s | %s | %s | %s |" % (
            r.get("net", "lenet5"), r["n"], r["mode"], r["impl"], r["min_s"], r["median_s"],
            r["passes"], r["max_rel_err"], target_text, fixed, to_target,
            "%.2f" % products if products is not None else "",
            "%.2f" % floor if floor is not None and r["mode"] == "resident" else "",
            "%.2f" % gemm if gemm else ""))


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--table":
        with open(sys.argv[2]) as f:
            print_table(json.load(f))
    elif len(sys.argv) == 3 and sys.argv[1] == "--remeasure-ceilings":
        remeasure_ceilings(sys.argv[2])
    else:
        main()

#!/usr/bin/python3
"""Issue 17, one run side by side: nfk fit (V resident, and streamed with --memory-budget 1)
against what a PyTorch user writes (bench/pytorch_user.py: vmap(grad) per-sample gradients + the
randomized SVD by GEMMs, resident and streamed), LeNet-5 trained one epoch, MNIST, k = 32,
float32, CPU; each run's top-32 σ against a float64 reference of the same model and data; the
passes over V each made. Runs are interleaved (nfk, user, nfk, user, ...) so that a shared
machine's load falls on both alike; the load average is recorded before and after.

Usage (from the repository root, after building nfk):
  bench/run_passes_bench.py --out bench/results/passes_cpu.json [--ns 2048 4096] [--repeats 2]
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


def spectrum(projector):
    out = subprocess.run([NFK, "spectrum", "--projector", projector, "--json"], check=True,
                         capture_output=True).stdout
    return np.array(json.loads(out)["singular_values"])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--ns", type=int, nargs="*", default=[2048, 4096])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--streamed-repeats", type=int, default=1)
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--user-oversample", type=int, default=32,
                    help="the baseline's oversampling (32: what reaches 2e-4 at 10 iterations)")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="nfk_passes_")
    ceilings = cpu_ceilings()
    floor_s.copy_gbs = ceilings["copy_gbs"]
    model = os.path.join(work, "lenet5_ts.pt")
    subprocess.run([sys.executable, USER, "--make-model", model], check=True)
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    report = {"commit": commit, "cpu": cpu_name(), "cpu_count": os.cpu_count(),
              "device": "cpu", "rank": a.rank, "dtype": "float32", "repeats": a.repeats,
              "streamed_repeats": a.streamed_repeats, "target_max_rel_err": 2e-4,
              "model": "LeNet-5 (61,706 parameters), seeded, trained one epoch (Adam, batch 64) "
                       "on the first 10,000 MNIST training images, TorchScript",
              "load_avg_start": os.getloadavg(), "ceilings": ceilings,
              "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": []}

    def save():
        tmp = a.out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, a.out)

    def nfk_fit(n, out, extra):
        cmd = [NFK, "fit", "--model", model, "--kind", "classifier", "--data",
               "mnist:train[:%d]" % n, "--rank", str(a.rank), "--estimator", "empirical",
               "--batch-size", "256", "--out", out, "--quiet", "--json", *extra]
        s, rss, stdout, _ = peak_rss_cmd(cmd)
        return json.loads(stdout), s, rss

    for n in a.ns:
        # The float64 reference: block Krylov with 20 extra probes, run to an estimated 1e-9.
        ref_path = os.path.join(work, "ref.nfk")
        ref, ref_s, _ = nfk_fit(n, ref_path, ["--dtype", "float64", "--method", "per-example",
                                              "--oversample", "20", "--tol", "1e-9",
                                              "--power-iters", "16", "--memory-budget", "8192"])
        truth = spectrum(ref_path)
        report["rows"].append({"n": n, "impl": "reference", "what": "nfk float64, block Krylov, "
                               "oversample 20, tol 1e-9", "seconds": ref_s,
                               "estimated_error": ref["profile"]["estimated_error"],
                               "singular_values": truth.tolist()})
        save()
        runs = {}
        for rep in range(a.repeats):
            for mode in ("resident", "streamed"):
                if mode == "streamed" and rep >= a.streamed_repeats:
                    continue
                out = os.path.join(work, "p.nfk")
                extra = [] if mode == "resident" else ["--memory-budget", "1"]
                fit, process_s, rss = nfk_fit(n, out, extra)
                err = float((np.abs(spectrum(out) - truth) / truth).max())
                runs.setdefault(("nfk", mode), []).append(
                    {"seconds": fit["profile"]["total_s"], "process_seconds": process_s,
                     "peak_rss_mib": rss, "passes": fit["profile"]["passes"],
                     "iterations": fit["profile"]["iterations"],
                     "estimated_error": fit["profile"]["estimated_error"],
                     "max_rel_err": err, "profile": fit["profile"],
                     "svd": fit["plan"]["svd"], "method_note": fit["method_note"],
                     "floor_s": floor_s(fit), "v_bytes": fit["plan"]["v_bytes"],
                     "gemm_floor_s": fit["profile"]["product_flops"] / (ceilings["gemm_gflops"] * 1e9)})
                s, rss, stdout, _ = peak_rss_cmd([sys.executable, USER, "--model", model,
                                                  "--n", str(n), "--mode", mode,
                                                  "--oversample", str(a.user_oversample)])
                user = json.loads(stdout)
                err = float((np.abs(np.array(user.pop("singular_values")) - truth) / truth).max())
                user.update({"process_seconds": s, "peak_rss_mib": rss, "max_rel_err": err})
                runs.setdefault(("pytorch-user", mode), []).append(user)
                print(json.dumps({"n": n, "mode": mode, "nfk_s": runs[("nfk", mode)][-1]["seconds"],
                                  "user_s": user["seconds"]}), flush=True)
        for (impl, mode), rs in runs.items():
            times = [r["seconds"] for r in rs]
            report["rows"].append({"n": n, "impl": impl, "mode": mode, "runs": rs,
                                   "min_s": min(times), "median_s": float(np.median(times)),
                                   "passes": rs[0]["passes"],
                                   "max_rel_err": max(r["max_rel_err"] for r in rs)})
        for mode in ("resident", "streamed"):
            mine = [r for r in report["rows"] if r.get("mode") == mode and r["n"] == n]
            by = {r["impl"]: r for r in mine}
            if "nfk" in by and "pytorch-user" in by:
                report["rows"].append({"n": n, "ratio": mode,
                                       "user_over_nfk_min": by["pytorch-user"]["min_s"] /
                                       by["nfk"]["min_s"]})
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
    print("| N | mode | implementation | fit s (min) | median | passes over V | max rel. err. "
          "top-32 σ | user / nfk | products s | copy floor s | GEMM floor s |")
    print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = report["rows"]
    for r in rows:
        if "impl" not in r or r["impl"] == "reference":
            continue
        ratio = [x["user_over_nfk_min"] for x in rows
                 if x.get("ratio") == r["mode"] and x["n"] == r["n"]]
        best = min(r["runs"], key=lambda x: x["seconds"])
        products = best.get("profile", {}).get("products_s")
        floor = best.get("floor_s")
        gemm = best.get("gemm_floor_s")
        print("| %d | %s | %s | %.2f | %.2f | %d | %.1e | %s | %s | %s | %s |" % (
            r["n"], r["mode"], r["impl"], r["min_s"], r["median_s"], r["passes"],
            r["max_rel_err"], "%.2f×" % ratio[0] if ratio and r["impl"] == "nfk" else "",
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

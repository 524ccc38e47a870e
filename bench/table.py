#!/usr/bin/python3
"""Markdown tables from a run_fit_bench.py result: the fit times with where they went (stages,
GEMM and memory rates against the device's measured ceilings), how time grows with N, the
functorch Alg. 4 reference, and the float64 accuracy checks.

Usage: bench/table.py bench/results/cpu.json [more.json ...]
"""
import json
import sys


def fmt(x, digits=2):
    if x is None:
        return "–"
    if x >= 100:
        return "%.0f" % x
    return "%.*f" % (digits, x)


N_PARAMS = {"lenet5": 61706, "dcgan-d": 142529, "wrn-40-2": 2243546}  # rows written before n_params


def rates(run, peaks):
    """A run's rates and their fractions of the device's ceilings (float32 values): the products'
    GEMM GFLOP/s (V resident) and the bytes of V they stream, the per-example part's J writes."""
    p, n = run["profile"], run["n"]
    n_params = run.get("n_params") or N_PARAMS[run["net"]]
    gemm, copy = peaks.get("gemm_gflops"), peaks.get("copy_gbs")
    out = {}
    if p["product_flops"] > 0 and p["products_s"] > 0:
        out["gemm_gflops"] = p["product_flops"] / p["products_s"] * 1e-9
        out["v_read_gbs"] = p["products"] * n * n_params * 4 / p["products_s"] * 1e-9
        if gemm:
            out["gemm_fraction_of_mm"] = out["gemm_gflops"] / gemm
        if copy:
            out["v_read_fraction_of_copy"] = out["v_read_gbs"] / copy
    if p["gradients_s"] > 0:
        out["gradients_examples_per_s"] = n / p["gradients_s"]
        out["j_write_gbs"] = n * n_params * 4 / p["gradients_s"] * 1e-9
        if copy:
            out["j_write_fraction_of_copy"] = out["j_write_gbs"] / copy
    return out


def rate_cell(r, value, fraction):
    if value not in r:
        return "–"
    return "%s (%.0f%%)" % (fmt(r[value], 1), 100 * r[fraction]) if fraction in r \
        else fmt(r[value], 1)


def runs_table(report):
    peaks = report.get("device_peaks", {})
    print("| net | method | N | fit s (min) | median | ex/s | statistics | gradients | products "
          "| factorizations | GEMM GFLOP/s (of mm) | V read GB/s (of copy) | J write GB/s (of copy) "
          "| peak RSS MiB | peak device MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in report["runs"]:
        p = r["profile"]
        x = rates(r, peaks)
        gemm_rate = rate_cell(x, "gemm_gflops", "gemm_fraction_of_mm")
        v_rate = rate_cell(x, "v_read_gbs", "v_read_fraction_of_copy")
        j_rate = rate_cell(x, "j_write_gbs", "j_write_fraction_of_copy")
        print("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            r["net"], r["method"], r["n"], fmt(r["min_s"]), fmt(r["median_s"]),
            fmt(r["examples_per_s"], 0), fmt(p["statistics_s"]), fmt(p["gradients_s"]),
            fmt(p["products_s"]), fmt(p["factorizations_s"]), gemm_rate, v_rate, j_rate,
            fmt(r["peak_rss_mib"], 0), fmt(r.get("peak_device_mib"), 0)))


def growth_table(report):
    groups = {}
    for r in report["runs"]:
        groups.setdefault((r["net"], r["method"]), []).append(r)
    print("| net | method | N range | time ratio | N ratio | seconds per 1,000 examples |")
    print("|---|---|---|---:|---:|---|")
    for (net, method), rows in groups.items():
        if len(rows) < 2:
            continue
        rows.sort(key=lambda r: r["n"])
        lo, hi = rows[0], rows[-1]
        per_k = ", ".join(fmt(1000 * r["min_s"] / r["n"]) for r in rows)
        print("| %s | %s | %d…%d | %.2f | %.0f | %s |" % (
            net, method, lo["n"], hi["n"], hi["min_s"] / lo["min_s"], hi["n"] / lo["n"], per_k))


def main():
    for path in sys.argv[1:]:
        report = json.load(open(path))
        peaks = report.get("device_peaks", {})
        print("### %s\n" % path)
        print("commit %s, device %s (%s), torch %s; measured ceilings (float32): square GEMM "
              "%s GFLOP/s, copy %s GB/s (read + write); %s repeats, k = %s, %s power iterations\n"
              % (report["commit"], report["device"], peaks.get("name", "?"), peaks.get("torch", "?"),
                 fmt(peaks.get("gemm_gflops"), 1), fmt(peaks.get("copy_gbs"), 1),
                 report["repeats"], report["rank"], report["power_iters"]))
        runs_table(report)
        print()
        growth_table(report)
        print()
        if report.get("functorch"):
            print("| reference | N | fit s (min) | process s (min) | peak RSS MiB | peak device MiB |")
            print("|---|---:|---:|---:|---:|---:|")
            for f in report["functorch"]:
                print("| functorch Alg. 4 (%s) | %d | %s | %s | %s | %s |" % (
                    f.get("device", "cpu"), f["n"], fmt(f["min_s"]),
                    fmt(min(f["process_seconds"])), fmt(f["peak_rss_mib"], 0),
                    fmt(f.get("peak_device_mib"), 0)))
            print()
        if report.get("accuracy"):
            print("| N | fast path | vs | max relative error, top-%s σ |" % report["rank"])
            print("|---:|---|---|---:|")
            for a in report["accuracy"]:
                print("| %d | %s | %s | %.1e |" % (a["n"], a["fast"], a["reference"],
                                                   a["max_rel_err_top_k"]))
            print()


if __name__ == "__main__":
    main()

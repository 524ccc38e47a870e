"""Writes results/zoo/README.md from the files scripts/reproduce_zoo left in results/zoo/."""
import json
import os
import sys

root = sys.argv[1]


def load(path):
    return json.load(open(path)) if os.path.exists(path) else None


lines = ["# Model zoo on MNIST: training results and NFK spectra", "",
         "Produced by `scripts/reproduce_zoo` (CPU, 2 cores). Each family was trained by "
         "`nfk train` on mnist:train and evaluated on mnist:test; the NFK spectra come from "
         "`nfk fit --method exact` (the whole Gram spectrum of V, so the component counts are "
         "exact) on the first test images.", "",
         "| family (model, Fisher reference) | test metric | train time | NFK: examples | params "
         "| top-1 share | 50% in | 90% in | 99% in | 99.5% in |",
         "|---|---|---|---|---|---|---|---|---|---|---|"]
for family in ["classifier", "gan", "vae", "density"]:
    d = os.path.join(root, family)
    log = load(os.path.join(d, "train_log.json"))
    if log is None:
        continue
    tt = load(os.path.join(d, "train_time.json")) or {}
    metric = ""
    if "test_accuracy" in log:
        metric = f"accuracy {100 * log['test_accuracy']:.2f}%"
    for key, name in [("test_iwae", "IWAE log p(x) (nats)"), ("test_elbo", "ELBO (nats)"),
                      ("test_log_likelihood", "log p(x) (nats, dequantized)"), ("test_bits_per_dim", "bits/dim")]:
        if key in log:
            metric += f"{', ' if metric else ''}{name} {log[key]:.2f}"
    if family == "gan" and log["epochs"]:
        fs = [e.get("fisher_similarity") for e in log["epochs"]]
        metric = "Fisher similarity by epoch: " + ", ".join(f"{x:.2f}" for x in fs if x is not None)
    for tag in ["trained", "untrained", "trained_empirical", "untrained_empirical"]:
        s = load(os.path.join(d, f"spectrum_{tag}.json"))
        if s is None:
            continue
        c = s["components_for"]
        model = "untrained" if tag.startswith("untrained") else "trained"
        lines.append(f"| {family} ({model}, {s['estimator']}) | "
                     f"{metric if tag == 'trained' else ''} | "
                     f"{str(tt.get('train_seconds', '')) + ' s' if tag == 'trained' else ''} | "
                     f"{s['n_examples']} | {s['n_params']} | "
                     f"{100 * s['explained_variance_ratio'][0]:.1f}% | {c['0.5']} | {c['0.9']} | "
                     f"{c['0.99']} | {c['0.995']} |")
lines += ["", "What these numbers say, and where they differ from the paper: "
          "[FINDINGS.md](FINDINGS.md).", "", "Commands (see each family's `train_time.json`):", ""]
for family in ["classifier", "gan", "vae", "density"]:
    tt = load(os.path.join(root, family, "train_time.json"))
    if tt:
        lines.append(f"- `{tt['command']}`")
lines += ["", "Images: `<family>/samples.png` (and `vae/reconstructions.png`), spectra "
          "`<family>/spectrum_<trained|untrained>.png`; the full training curves are in "
          "`<family>/train_log.json`.", ""]
open(os.path.join(root, "README.md"), "w").write("\n".join(lines))
print("\n".join(lines))

"""Report phase of results/ngd/run.py: results.json, ngd_mnist.png and tables.md from the
train_log.json files that `nfk train classifier` wrote (nothing here is typed in by hand)."""
import json
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
COLORS = {"sgd": "tab:blue", "adam": "tab:orange", "ngd-diag": "tab:green", "kfac": "tab:red",
          "kfac-empirical": "tab:purple", "sgd-long": "tab:cyan", "adam-long": "tab:brown",
          "kfac-long": "tab:pink"}
BASE = {"kfac-empirical": "kfac", "sgd-long": "sgd", "adam-long": "adam", "kfac-long": "kfac"}
EXTRA = ["kfac-empirical", "sgd-long", "adam-long", "kfac-long"]


def main(a, grid, optimizers, archs, targets, epochs, common, best_tag, reach, run_dir):
    runs, chosen = [], {}
    for arch in archs:
        for opt in optimizers + EXTRA:
            tags = [t for t, _ in grid(a, arch, BASE.get(opt, opt)) or []]
            for tag in tags:
                d = run_dir(a.work, arch, opt, tag)
                f = os.path.join(d, "train_log.json")
                if not os.path.exists(f):
                    continue
                lj = json.load(open(f))
                job = json.load(open(os.path.join(d, "job.json")))
                r = {"arch": arch, "optimizer": opt, "setting": tag, "command": " ".join(job["command"]),
                     "process_wall_seconds": job["wall_seconds"],
                     "loss": [e["loss"] for e in lj["epochs"]],
                     "test_accuracy": [e["test_accuracy"] for e in lj["epochs"]],
                     "epoch_seconds": lj["epoch_seconds"]}
                for t in targets:
                    e, s = reach(lj, t)
                    r[f"epochs_to_{int(t * 100)}"] = e
                    r[f"seconds_to_{int(t * 100)}"] = s
                runs.append(r)
            if opt not in EXTRA:
                chosen[f"{arch}/{opt}"] = best_tag(a, arch, opt)
            elif opt != "kfac-empirical":
                chosen[f"{arch}/{opt}"] = chosen.get(f"{arch}/{BASE[opt]}")
        emp = [r for r in runs if r["arch"] == arch and r["optimizer"] == "kfac-empirical"]
        if emp:  # the ablation at K-FAC's chosen setting (other settings, if any, in the grid table)
            same = [r for r in emp if r["setting"] == chosen.get(f"{arch}/kfac")]
            chosen[f"{arch}/kfac-empirical"] = (same or emp)[0]["setting"]
    grids = {arch: {opt: grid(a, arch, opt) for opt in optimizers} for arch in archs}
    out = {"epochs": epochs, "common_flags": common, "grids": grids, "targets": targets,
           "selection": "per optimizer and network, fewest epochs to 98 %, then to 97 %, then the best final test accuracy "
                        "(on the test set: train classifier has no validation split)",
           "chosen": chosen, "runs": runs}
    json.dump(out, open(os.path.join(HERE, "results.json"), "w"), indent=1)

    def get(arch, opt, tag):
        return next((r for r in runs if (r["arch"], r["optimizer"], r["setting"]) ==
                     (arch, opt, tag)), None)

    def cell(e, s):
        return "not reached" if e is None else f"{e} ({s:.0f} s)"

    lines = []
    for arch in archs:
        lines.append(f"\n### {arch}: the chosen setting of each optimizer "
                     f"({epochs[arch]} epochs of the 60,000 training images, batch 128)\n")
        lines.append("| optimizer | chosen | epochs (wall s) to 97 % | epochs (wall s) to 98 % | "
                     "best test acc. (epoch) | final test acc. | final loss | s / epoch |")
        lines.append("|---|---|---|---|---|---|---|---|")
        for opt in optimizers + EXTRA:
            r = get(arch, opt, chosen.get(f"{arch}/{opt}"))
            if r is None and opt.endswith("-long"):
                continue
            if r is None:
                lines.append(f"| {opt} | (not run) | | | | | | |")
                continue
            best = max(r["test_accuracy"])
            be = r["test_accuracy"].index(best) + 1
            name = f"{opt} ({len(r['loss'])} epochs)" if opt.endswith("-long") else opt
            lines.append(f"| {name} | {r['setting']} | {cell(r['epochs_to_97'], r['seconds_to_97'])}"
                         f" | {cell(r['epochs_to_98'], r['seconds_to_98'])} | {best:.4f} ({be}) | "
                         f"{r['test_accuracy'][-1]:.4f} | {r['loss'][-1]:.4f} | "
                         f"{sum(r['epoch_seconds']) / len(r['epoch_seconds']):.1f} |")
        lines.append(f"\n{arch}, every grid point (test accuracy after each epoch):\n")
        lines.append("| optimizer | setting | test accuracy per epoch | to 97 % | to 98 % |")
        lines.append("|---|---|---|---|---|")
        for r in [r for r in runs if r["arch"] == arch]:
            lines.append(f"| {r['optimizer']} | {r['setting']} | "
                         f"{', '.join(f'{v:.4f}' for v in r['test_accuracy'])} | "
                         f"{cell(r['epochs_to_97'], r['seconds_to_97'])} | "
                         f"{cell(r['epochs_to_98'], r['seconds_to_98'])} |")
    open(os.path.join(HERE, "tables.md"), "w").write("\n".join(lines) + "\n")
    print("\n".join(lines))

    fig, ax = plt.subplots(len(archs), 3, figsize=(16, 4.3 * len(archs)), squeeze=False)
    for i, arch in enumerate(archs):
        for opt in optimizers + EXTRA:
            r = get(arch, opt, chosen.get(f"{arch}/{opt}"))
            if r is None:
                continue
            ep = list(range(1, len(r["loss"]) + 1))
            t, acc = 0.0, []
            for s in r["epoch_seconds"]:
                t += s
                acc.append(t)
            lab = f"{opt} ({r['setting']})"
            ls = "-" if opt in optimizers else "--"
            ax[i][0].semilogy(ep, r["loss"], ls, marker="o", color=COLORS[opt], label=lab)
            ax[i][1].plot(ep, r["test_accuracy"], ls, marker="o", color=COLORS[opt], label=lab)
            ax[i][2].plot(acc, r["test_accuracy"], ls, marker="o", color=COLORS[opt], label=lab)
        ax[i][0].set_ylabel(f"{arch}: mean training loss of the epoch")
        for j in (1, 2):
            for t in targets:
                ax[i][j].axhline(t, color="k", ls=":", lw=0.8)
            ax[i][j].set_ylim(0.94, 1.0)
            ax[i][j].set_ylabel("test accuracy")
        ax[i][0].set_xlabel("epoch")
        ax[i][1].set_xlabel("epoch")
        ax[i][2].set_xlabel("wall seconds of training steps (epoch_seconds, cumulative)")
        ax[i][0].legend(fontsize=8)
    fig.suptitle("MNIST, chosen setting per optimizer (seed 0)")
    fig.tight_layout()
    fig.savefig(os.path.join(HERE, "ngd_mnist.png"), dpi=100)
    plt.close(fig)

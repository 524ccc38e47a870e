"""Report phase of results/continual/run.py: results.json, figures and tables.md from the
result.json files that `nfk continual` wrote under --work (nothing here is typed in by hand)."""
import json
import os

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
COLORS = {"finetune": "k", "ewc-true": "tab:blue", "ewc-mc": "tab:orange",
          "ewc-empirical": "tab:green", "ewc-batched": "tab:red", "l2": "tab:purple",
          "online-ewc-true": "tab:brown", "ewc-true-54k": "tab:cyan"}


def load(path):
    return json.load(open(path)) if os.path.exists(path) else None


def seen_average(matrix):
    """Mean test accuracy over the tasks trained so far, after each task."""
    m = np.array(matrix)
    return [float(m[i, :i + 1].mean()) for i in range(len(m))]


def summarise_row(work, name):
    grid = load(os.path.join(work, name, "grid", "result.json"))
    if grid is None:
        return None
    more = load(os.path.join(work, name, "seeds12", "result.json"))
    jobs = [load(os.path.join(work, name, d, "job.json")) for d in ["grid", "seeds12"]]
    lam = grid["lambda"]
    runs = [r for r in grid["runs"] if r["lambda"] == lam]
    if more is not None:
        runs += more["runs"]
    finals = [r["average_test_accuracy"] for r in runs]
    sweep = [{"lambda": r["lambda"], "test": r["average_test_accuracy"],
              "validation": r["average_validation_accuracy"],
              "first_task_final": r["test_accuracy"][-1][0],
              "just_trained": float(np.mean(np.diag(np.array(r["test_accuracy"])))),
              "last_task_final": r["test_accuracy"][-1][-1],
              "seconds": sum(r["task_seconds"])} for r in grid["runs"]]
    curves = [seen_average(r["test_accuracy"]) for r in runs]
    # Each task's test accuracy right after it was trained: the ceiling on the final average.
    diag = [float(np.mean(np.diag(np.array(r["test_accuracy"])))) for r in runs]
    return {
        "row": name, "method": grid["method"], "fisher": grid.get("fisher"),
        "scenario": grid["scenario"], "lambda_grid": grid["lambda_grid"], "lambda_chosen": lam,
        "lambda_chosen_on": grid["lambda_chosen_on"],
        "seeds": [r["seed"] for r in runs], "final_average_test": finals,
        "mean": float(np.mean(finals)), "std": float(np.std(finals)),
        "just_trained_average": diag, "just_trained_mean": float(np.mean(diag)),
        "seen_average_curve_mean": np.mean(curves, axis=0).tolist(),
        "accuracy_matrix_seed0": runs[0]["test_accuracy"],
        "sweep_seed0": sweep,
        "run_seconds": [sum(r["task_seconds"]) for r in runs],
        "job_wall_seconds": [j["wall_seconds"] for j in jobs if j is not None],
        "commands": [" ".join(j["command"]) for j in jobs if j is not None],
        "settings": {k: grid[k] for k in ["tasks", "train_examples_per_task", "epochs_per_task",
                                          "batch_size", "learning_rate", "optimizer", "network",
                                          "fisher_examples", "gamma", "benchmark"]
                     if k in grid},
    }


EXTENSIONS = ("-fine", "-high", "-54k")  # seed-0 extensions, not rows of the main table


def fmt(x):
    return f"{x:.3f}"


def ms(s):
    """mean ± std over seeds, or the one seed's value."""
    if len(s["seeds"]) == 1:
        return f"**{fmt(s['mean'])}** (seed 0 only)"
    return f"**{fmt(s['mean'])} ± {fmt(s['std'])}**"


def lam_str(v):
    return f"{v:g}"


def tables(S):
    out = []
    perm = [s for s in S if s["row"].startswith("permuted/")]
    if perm:
        out.append("### Permuted MNIST-10: final average test accuracy over all 10 tasks\n")
        out.append("| method | Fisher | λ grid (seed 0, validation) | λ chosen | seeds | "
                   "final average accuracy (mean ± std) | per seed | "
                   "each task just after training it (mean) |")
        out.append("|---|---|---|---|---|---|---|---|")
        for s in [s for s in perm if not s["row"].endswith(EXTENSIONS)]:
            out.append(f"| {s['method']} | {s['fisher'] if s['method'] in ('ewc', 'online-ewc') else '–'}"
                       f" | {', '.join(lam_str(g) for g in s['lambda_grid'])} | "
                       f"{lam_str(s['lambda_chosen'])} | {','.join(map(str, s['seeds']))} | "
                       f"{ms(s)} | "
                       f"{', '.join(fmt(v) for v in s['final_average_test'])} | "
                       f"{fmt(s['just_trained_mean'])} |")
        big = [s for s in perm if s["row"].endswith("-54k")]
        base = next((s for s in perm if s["row"] == "permuted/ewc-true"), None)
        if big and base:
            out.append("\n### Permuted MNIST-10, EWC (true Fisher, λ = 100, seed 0): training "
                       "examples per task\n")
            out.append("| training images per task (steps per task) | final average accuracy | "
                       "each task just after training it | task 1 after 10 | run seconds |")
            out.append("|---|---|---|---|---|")
            for s, lab in [(base, "18,000 (141)"), (big[0], "54,000 (422)")]:
                w = next(w for w in s["sweep_seed0"] if w["lambda"] == 100)
                out.append(f"| {lab} | {fmt(w['test'])} | {fmt(w['just_trained'])} | "
                           f"{fmt(w['first_task_final'])} | {w['seconds']:.0f} |")
        out.append("\n### Permuted MNIST-10: the λ sweep on seed 0 (final average accuracy)\n")
        out.append("| row | λ | validation | test | task 1 after 10 | task 10 after 10 | "
                   "each task just after training it | run seconds |")
        out.append("|---|---|---|---|---|---|---|---|")
        for s in [s for s in perm if not s["row"].endswith("-54k")]:
            for w in s["sweep_seed0"]:
                out.append(f"| {s['row'].split('/')[1]} | {lam_str(w['lambda'])} | "
                           f"{fmt(w['validation'])} | {fmt(w['test'])} | "
                           f"{fmt(w['first_task_final'])} | {fmt(w['last_task_final'])} | "
                           f"{fmt(w['just_trained'])} | {w['seconds']:.0f} |")
    relu = [s for s in S if s["row"].startswith("permuted-relu/")]
    if relu:
        out.append("\n### Permuted MNIST-10, the larger protocol (ReLU, 54,000 training images, 2 "
                   "epochs per task): final average test accuracy\n")
        out.append("| row | method | Fisher | λ sweep, seed 0: λ → validation / test | λ chosen | "
                   "seeds | final average accuracy (mean ± std) | per seed | "
                   "each task just after training it (mean) | run seconds (seed 0) |")
        out.append("|---|---|---|---|---|---|---|---|---|---|")
        for s in relu:
            sw = "; ".join(f"{lam_str(w['lambda'])} → {fmt(w['validation'])} / {fmt(w['test'])}"
                           for w in s["sweep_seed0"])
            secs = next(w["seconds"] for w in s["sweep_seed0"]
                        if w["lambda"] == s["lambda_chosen"])
            out.append(f"| {s['row'].split('/')[1]} | {s['method']} | "
                       f"{s['fisher'] if s['method'] == 'ewc' else '–'} | {sw} | "
                       f"{lam_str(s['lambda_chosen'])} | {','.join(map(str, s['seeds']))} | "
                       f"{ms(s)} | {', '.join(fmt(v) for v in s['final_average_test'])} | "
                       f"{fmt(s['just_trained_mean'])} | {secs:.0f} |")
    for sc, title in [("split-task", "task-incremental (multi-head: the task's two logits)"),
                      ("split-class", "class-incremental (one 10-way head)")]:
        rows = [s for s in S if s["row"].startswith(sc + "/")]
        if not rows:
            continue
        out.append(f"\n### Split MNIST, {title}: final average test accuracy over 5 tasks\n")
        out.append("| method | λ grid | λ chosen | seeds | final average accuracy (mean ± std) |"
                   " each task just after training it | λ sweep, seed 0: λ → validation / test |")
        out.append("|---|---|---|---|---|---|---|")
        for s in rows:
            sw = "; ".join(f"{lam_str(w['lambda'])} → {fmt(w['validation'])} / {fmt(w['test'])}"
                           for w in s["sweep_seed0"])
            out.append(f"| {s['method']} | {', '.join(lam_str(g) for g in s['lambda_grid'])} | "
                       f"{lam_str(s['lambda_chosen'])} | {','.join(map(str, s['seeds']))} | "
                       f"{ms(s)} | {fmt(s['just_trained_mean'])} | "
                       f"{sw} |")
    out.append("\n### Wall time of each nfk call (seconds, 1 thread, idle 2-core machine, two calls at a time)\n")
    out.append("| row | λ-grid call (seed 0) | chosen-λ call (seeds 1, 2) |")
    out.append("|---|---|---|")
    for s in S:
        w = s["job_wall_seconds"] + [float("nan")] * 2
        out.append(f"| {s['row']} | {w[0]:.0f} | {w[1]:.0f} |")
    return "\n".join(out) + "\n"


def figures(S):
    perm = [s for s in S if s["row"].startswith("permuted/")]
    if perm:
        fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
        for s in [s for s in perm if not s["row"].endswith(("-fine", "-high"))]:
            c = s["seen_average_curve_mean"]
            ax[0].plot(range(1, len(c) + 1), c, marker="o", ms=3,
                       color=COLORS.get(s["row"].split("/")[1]),
                       label=f"{s['row'].split('/')[1]} (λ={lam_str(s['lambda_chosen'])})")
        ax[0].axhline(0.9, color="k", ls=":", lw=1, label="target 0.90")
        ax[0].set_xlabel("tasks trained")
        ax[0].set_ylabel("mean test accuracy on the tasks so far")
        ax[0].set_title("Permuted MNIST-10 (mean over seeds 0-2)")
        ax[0].legend(fontsize=7)
        sweeps = {}  # rows of one method and Fisher on the 20k-per-task protocol, merged
        for s in perm:
            if s["method"] in ("ewc", "online-ewc") and not s["row"].endswith("54k"):
                sweeps.setdefault(f"{s['method']}-{s['fisher']}", []).extend(s["sweep_seed0"])
        for key, sw in sweeps.items():
            sw = sorted(sw, key=lambda w: w["lambda"])
            ax[1].semilogx([w["lambda"] for w in sw], [w["test"] for w in sw], marker="o",
                           color=COLORS.get(key), label=key)
        ax[1].set_xlabel("λ")
        ax[1].set_ylabel("final average test accuracy (seed 0)")
        ax[1].set_title("λ sweep: stability vs plasticity")
        ax[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(HERE, "permuted_mnist.png"), dpi=110)
        plt.close(fig)
        shown = [s for s in perm if s["row"] in ("permuted/finetune", "permuted/ewc-true")]
        if shown:
            fig, ax = plt.subplots(1, len(shown), figsize=(5.5 * len(shown), 4.5))
            ax = np.atleast_1d(ax)
            for a_, s in zip(ax, shown):
                im = a_.imshow(np.array(s["accuracy_matrix_seed0"]), vmin=0, vmax=1,
                               cmap="viridis")
                a_.set_title(f"{s['row']} λ={lam_str(s['lambda_chosen'])}, seed 0")
                a_.set_xlabel("task evaluated")
                a_.set_ylabel("after training task")
                a_.set_xticks(range(10))
                a_.set_xticklabels(range(1, 11))
                a_.set_yticks(range(10))
                a_.set_yticklabels(range(1, 11))
            fig.colorbar(im, ax=list(ax))
            fig.savefig(os.path.join(HERE, "permuted_accuracy_matrix.png"), dpi=110)
            plt.close(fig)
    split = [s for s in S if s["row"].startswith("split")]
    if split:
        fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
        for a_, sc in zip(ax, ["split-task", "split-class"]):
            for s in [s for s in split if s["row"].startswith(sc + "/")]:
                c = s["seen_average_curve_mean"]
                a_.plot(range(1, len(c) + 1), c, marker="o",
                        label=f"{s['method']} (λ={lam_str(s['lambda_chosen'])})")
            a_.set_title(f"Split MNIST, {sc.split('-')[1]}-incremental (mean over seeds)")
            a_.set_xlabel("tasks trained")
            a_.set_ylabel("mean test accuracy on the tasks so far")
            a_.set_ylim(0, 1.02)
            a_.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(os.path.join(HERE, "split_mnist.png"), dpi=110)
        plt.close(fig)


def main(work, rows, bench, common, seeds):
    S = [s for s in (summarise_row(work, r[0]) for r in rows) if s is not None]
    missing = [r[0] for r in rows if r[0] not in {s["row"] for s in S}]
    out = {"benchmarks": bench, "common_flags": common, "seeds": seeds, "rows": S,
           "missing_rows": missing}
    json.dump(out, open(os.path.join(HERE, "results.json"), "w"), indent=1)
    figures(S)
    open(os.path.join(HERE, "tables.md"), "w").write(tables(S))
    print(tables(S))
    if missing:
        print("missing rows:", ", ".join(missing))

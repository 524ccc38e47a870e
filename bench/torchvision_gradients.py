"""Per-example-gradient throughput of torchvision networks in nfk: the layer tape (one backward
per batch) vs the loop (one backward per example), and which torchvision architectures take the
tape at all. Not a test: nothing here asserts a time.

usage: /usr/bin/python3 bench/torchvision_gradients.py --out bench/results/torchvision_cpu.json
       [--nfk-bench build/nfk_bench] [--n 32] [--reps 3] [--batch 16] [--survey]

Throughput: ResNet-18, ShuffleNetV2 x0.5, MobileNetV3-small (torchvision, untrained, seeded,
10 classes), TorchScript (torch.jit.script), float32, N inputs of 3x32x32, kind classifier
(s = logsumexp of the logits); each path timed REPS times over all N examples (min and median).
--survey: every classification architecture of the installed torchvision, smallest variant per
family, scripted and traced, float32 on 2 inputs of 3x80x80: whether the tape is taken, the
fallback reason nfk returns, and the tape's relative difference from the loop.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MAKE_MODELS = os.path.join(ROOT, "tests", "cli", "torchvision_models.py")
BENCH_NETS = ["resnet18", "shufflenet_v2_x0_5", "mobilenet_v3_small"]
# The smallest variant of each torchvision (0.14) classification family.
SURVEY_NETS = ["alexnet", "convnext_tiny", "densenet121", "efficientnet_b0", "efficientnet_v2_s",
               "googlenet", "inception_v3", "mnasnet0_5", "mobilenet_v2", "mobilenet_v3_small",
               "regnet_x_400mf", "regnet_y_400mf", "resnet18", "resnext50_32x4d",
               "shufflenet_v2_x0_5", "squeezenet1_1", "swin_t", "vgg11", "vgg11_bn", "vit_b_16",
               "wide_resnet50_2"]


def host():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()
    return {"device": "cpu", "cpu": cpu, "cores": os.cpu_count(), "commit": commit,
            "dirty": bool(dirty)}


def make_models(out_dir, archs, size, how):
    subprocess.run([sys.executable, MAKE_MODELS, out_dir, "--arch", ",".join(archs), "--dtype",
                    "float32", "--size", str(size), "--classes", "10", "--how", how], check=True,
                   stderr=subprocess.DEVNULL)
    with open(os.path.join(out_dir, "index.json")) as f:
        return json.load(f)


def run_bench(nfk_bench, path, size, n, reps, batch):
    r = subprocess.run([nfk_bench, "torchscript", path, str(size), str(n), str(reps), str(batch),
                        "float32"], capture_output=True, text=True)
    if r.returncode != 0:
        return {"error": (r.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--nfk-bench", default=os.path.join(ROOT, "build", "nfk_bench"))
    p.add_argument("--n", type=int, default=32)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--survey", action="store_true")
    a = p.parse_args()
    result = {"host": host(), "n": a.n, "reps": a.reps, "batch": a.batch, "size": 32,
              "dtype": "float32", "throughput": [], "survey": []}

    def save():
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)

    with tempfile.TemporaryDirectory() as tmp:
        index = make_models(tmp, BENCH_NETS, 32, "script")
        result["torch"], result["torchvision"] = index["torch"], index["torchvision"]
        for m in index["models"]:
            row = run_bench(a.nfk_bench, m["path"], 32, a.n, a.reps, a.batch)
            row["model"] = m["arch"] + "_" + m["how"]
            result["throughput"].append(row)
            print(json.dumps(row), flush=True)
            save()
    if a.survey:
        for arch in SURVEY_NETS:  # one family at a time: the files of the big ones are large
            with tempfile.TemporaryDirectory() as tmp:
                index = make_models(tmp, [arch], 80, "script,trace")
                for f in index["failed"]:
                    f["tape_used"] = None
                    result["survey"].append(f)
                for m in index["models"]:
                    row = run_bench(a.nfk_bench, m["path"], 80, 2, 0, 2)
                    row["arch"], row["how"] = m["arch"], m["how"]
                    row.pop("model", None)
                    result["survey"].append(row)
                    print(json.dumps(row), flush=True)
                    save()
    save()


if __name__ == "__main__":
    main()

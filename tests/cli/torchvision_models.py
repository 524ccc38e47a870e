"""Writes torchvision classifiers as TorchScript files, for tests/test_torchvision_tape.cpp and
bench/torchvision_gradients.py. Run with Debian's python3 (python3-torch, python3-torchvision).

usage: torchvision_models.py DIR [--arch A,B,...|all] [--dtype float64|float32] [--size S]
                             [--classes C] [--how script,trace]

Each architecture A is written as DIR/A_script.pt (torch.jit.script) and DIR/A_trace.pt
(torch.jit.trace on a [2, 3, S, S] input), in eval mode, untrained (seeded) with num_classes=C,
and with every batch norm's running statistics and affine parameters drawn away from (0, 1) so
that eval-mode batch norm matters. DIR/index.json lists what was written and, per architecture
that could not be written, why. Exit status 77: torchvision is not installed (tests skip).
"""
import argparse
import json
import os
import sys

import torch

try:
    import torchvision
except ImportError:
    print("torchvision_models.py: python3-torchvision is not installed", file=sys.stderr)
    sys.exit(77)

DEFAULT_ARCHS = ["resnet18", "shufflenet_v2_x0_5", "mobilenet_v3_small"]


def all_classification_archs():
    """Every classification builder of this torchvision (quantized and video ones excluded)."""
    if hasattr(torchvision.models, "list_models"):
        return sorted(torchvision.models.list_models(module=torchvision.models))
    return sorted(n for n, f in vars(torchvision.models).items()
                  if callable(f) and n.islower() and not n.startswith("_") and n != "get_weight")


def build(arch, classes, dtype, size):
    kwargs = {"num_classes": classes}
    if arch in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=False)
    if arch.startswith("vit_"):  # position embeddings are sized for one image size
        kwargs.update(image_size=size)
    net = getattr(torchvision.models, arch)(**kwargs)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
    return net.to(dtype).eval()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("--arch", default=",".join(DEFAULT_ARCHS))
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--how", default="script,trace")
    a = p.parse_args()
    torch.set_num_threads(1)
    dtype = getattr(torch, a.dtype)
    archs = all_classification_archs() if a.arch == "all" else a.arch.split(",")
    os.makedirs(a.dir, exist_ok=True)
    index = {"torch": torch.__version__, "torchvision": torchvision.__version__,
             "dtype": a.dtype, "size": a.size, "classes": a.classes, "models": [], "failed": []}
    for arch in archs:
        torch.manual_seed(0)
        try:
            net = build(arch, a.classes, dtype, a.size)
        except Exception as e:  # e.g. a builder that needs arguments this script does not give
            index["failed"].append({"arch": arch, "how": "build", "why": str(e).splitlines()[0]})
            continue
        x = torch.rand(2, 3, a.size, a.size, dtype=dtype)
        for how in a.how.split(","):
            try:
                # Traced with gradients on: under no_grad, torch.jit.trace records fused
                # inference-only kernels (ViT's _native_multi_head_attention).
                m = torch.jit.script(net) if how == "script" else torch.jit.trace(net, x)
                with torch.no_grad():
                    out = m(x)
                if not isinstance(out, torch.Tensor):
                    raise TypeError(f"forward returns {type(out).__name__}, not a tensor")
            except Exception as e:
                index["failed"].append({"arch": arch, "how": how,
                                        "why": (str(e).strip().splitlines() or ["?"])[0][:200]})
                continue
            path = os.path.join(a.dir, f"{arch}_{how}.pt")
            m.save(path)
            n_params = sum(t.numel() for t in net.parameters())
            index["models"].append({"arch": arch, "how": how, "path": path, "params": n_params})
    with open(os.path.join(a.dir, "index.json"), "w") as f:
        json.dump(index, f, indent=1)


if __name__ == "__main__":
    main()

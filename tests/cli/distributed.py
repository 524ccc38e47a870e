"""Helpers of distributed.sh: a tiny TorchScript classifier, and comparisons of nfk outputs.

  distributed.py make DIR                   # DIR/mlp.pt: 784-16-10 MLP; DIR/vae.pt: tiny VAE
  distributed.py close A.npy B.npy TOL      # max |a - b| / max |a| <= TOL (exit 1 otherwise)
  distributed.py spectrum A.json B.json TOL # singular values relative to the largest
"""
import json
import sys

import numpy as np


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def main():
    cmd = sys.argv[1]
    if cmd == "make":
        import distributed_models  # torch: only here, the comparisons start fast without it
        distributed_models.make(sys.argv[2])
    elif cmd == "close":
        a, b, tol = np.load(sys.argv[2]), np.load(sys.argv[3]), float(sys.argv[4])
        if a.shape != b.shape:
            fail(f"{sys.argv[3]}: shape {b.shape}, expected {a.shape}")
        err = np.abs(a - b).max() / max(np.abs(a).max(), 1e-300)
        print(f"  {sys.argv[3].split('/')[-1]}: relative max error {err:.2e}")
        if not err <= tol:
            fail(f"{sys.argv[3]} differs from {sys.argv[2]}: {err:.3e} > {tol}")
    elif cmd == "spectrum":
        a = np.array(json.load(open(sys.argv[2]))["singular_values"])
        b = np.array(json.load(open(sys.argv[3]))["singular_values"])
        tol = float(sys.argv[4])
        err = np.abs(a - b).max() / a.max()
        print(f"  {sys.argv[3].split('/')[-1]}: singular values relative error {err:.2e}")
        if a.shape != b.shape or not err <= tol:
            fail(f"singular values differ: {a} vs {b}")
    else:
        fail("unknown command " + cmd)


if __name__ == "__main__":
    main()

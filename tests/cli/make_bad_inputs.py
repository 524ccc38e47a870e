"""Writes the models and data files that tests/cli/bad_input.sh feeds to nfk.

Usage: python3 make_bad_inputs.py OUTDIR   (needs torch and numpy)
"""
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn


class Classifier(nn.Module):
    """[B,1,8,8] -> logits [B,3]."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        h = torch.tanh(self.conv(x))
        return self.fc(h.flatten(1))


class Discriminator(nn.Module):
    """[B,1,8,8] -> [B,1]."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 16)
        self.fc2 = nn.Linear(16, 1)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x.flatten(1))))


class Generator(nn.Module):
    """h [B,4] -> [B,1,8,8]."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 64)

    def forward(self, h):
        return torch.tanh(self.fc(h)).view(-1, 1, 8, 8)


def write_idx3(path, images, claimed_n=None):
    n, rows, cols = images.shape
    with open(path, "wb") as f:
        f.write(struct.pack(">IIII", 0x00000803, claimed_n if claimed_n is not None else n, rows, cols))
        f.write(images.astype(np.uint8).tobytes())


def main():
    out = sys.argv[1]
    torch.manual_seed(0)
    rng = np.random.default_rng(0)

    clf = Classifier().eval()
    torch.jit.script(clf).save(os.path.join(out, "clf.pt"))
    torch.jit.script(Discriminator().eval()).save(os.path.join(out, "disc.pt"))
    torch.jit.script(Generator().eval()).save(os.path.join(out, "gen.pt"))

    # A second, different classifier (same architecture): used to replace clf.pt after a fit.
    torch.manual_seed(1)
    torch.jit.script(Classifier().eval()).save(os.path.join(out, "clf_other.pt"))

    # Classifier whose weights contain a NaN (and one with an Inf).
    bad = Classifier().eval()
    with torch.no_grad():
        bad.fc.weight[0, 0] = float("nan")
    torch.jit.script(bad).save(os.path.join(out, "clf_nan.pt"))
    bad = Classifier().eval()
    with torch.no_grad():
        bad.conv.bias[1] = float("inf")
    torch.jit.script(bad).save(os.path.join(out, "clf_inf.pt"))

    x = rng.standard_normal((20, 1, 8, 8)).astype(np.float32)
    np.save(os.path.join(out, "x.npy"), x)
    np.save(os.path.join(out, "x_5x5.npy"), rng.standard_normal((20, 1, 5, 5)).astype(np.float32))
    np.save(os.path.join(out, "x_flat.npy"), rng.standard_normal((20, 64)).astype(np.float32))
    xn = x.copy()
    xn[3, 0, 2, 5] = np.nan
    np.save(os.path.join(out, "x_nan.npy"), xn)
    xi = x.copy()
    xi[7, 0, 1, 1] = np.inf
    np.save(os.path.join(out, "x_inf.npy"), xi)
    # Labels for the classifier's Fisher: out of range, floating, one short.
    np.save(os.path.join(out, "y_big.npy"), np.full(20, 1000, np.int64))
    np.save(os.path.join(out, "y_float.npy"), np.zeros(20, np.float32))
    np.save(os.path.join(out, "y_short.npy"), np.zeros(19, np.int64))
    np.save(os.path.join(out, "y_ok.npy"), np.zeros(20, np.int64))

    # Corrupt .npy: random bytes, and a valid file cut short.
    with open(os.path.join(out, "random.npy"), "wb") as f:
        f.write(rng.integers(0, 256, 1000, dtype=np.uint8).tobytes())
    with open(os.path.join(out, "x.npy"), "rb") as f:
        good = f.read()
    with open(os.path.join(out, "truncated.npy"), "wb") as f:
        f.write(good[: len(good) - 1000])

    # 128 bytes: a header declaring 10**12 examples of 0 values each, and no data.
    np.save(os.path.join(out, "x_1e12x0.npy"), np.empty((10**12, 0), np.float32))
    assert os.path.getsize(os.path.join(out, "x_1e12x0.npy")) == 128

    # IDX3 whose header claims 20 images of 8x8 but only 12 are present.
    imgs = rng.integers(0, 256, (12, 8, 8))
    write_idx3(os.path.join(out, "truncated-idx3-ubyte"), imgs, claimed_n=20)
    # IDX with a garbage magic number.
    with open(os.path.join(out, "badmagic-idx3-ubyte"), "wb") as f:
        f.write(rng.integers(0, 256, 400, dtype=np.uint8).tobytes())


if __name__ == "__main__":
    main()

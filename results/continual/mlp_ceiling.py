#!/usr/bin/python3
"""The MLP's own ceiling, outside nfk: a plain PyTorch loop trains the 784-400-400-10 MLP (tanh or
ReLU) with Adam lr 1e-3, batch 128, on the first 18,000 MNIST training images (the smaller
protocol's training set, unpermuted) and prints the test accuracy on the first 2,000 test images
after each of 3 epochs. One thread, seed 0.

    /usr/bin/python3 results/continual/mlp_ceiling.py      # from the repository root
"""
import os

import numpy as np
import torch

torch.set_num_threads(1)
DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "mnist")


def idx(name):
    with open(os.path.join(DATA, name), "rb") as f:
        b = f.read()
    nd = b[3]
    shape = [int.from_bytes(b[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    return np.frombuffer(b, dtype=np.uint8, offset=4 + 4 * nd).reshape(shape)


x = torch.tensor(idx("train-images-idx3-ubyte")[:18000]).float().div(255).reshape(-1, 784)
y = torch.tensor(idx("train-labels-idx1-ubyte")[:18000]).long()
xt = torch.tensor(idx("t10k-images-idx3-ubyte")[:2000]).float().div(255).reshape(-1, 784)
yt = torch.tensor(idx("t10k-labels-idx1-ubyte")[:2000]).long()
for act in (torch.nn.Tanh, torch.nn.ReLU):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(784, 400), act(), torch.nn.Linear(400, 400), act(),
                              torch.nn.Linear(400, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for epoch in range(3):
        perm = torch.randperm(18000)
        for i in range(0, 18000, 128):
            b = perm[i:i + 128]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x[b]), y[b]).backward()
            opt.step()
        with torch.no_grad():
            acc = (net(xt).argmax(1) == yt).float().mean().item()
        print(f"{act.__name__} epoch {epoch + 1}: test accuracy {acc:.4f}", flush=True)

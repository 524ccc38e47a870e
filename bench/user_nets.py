"""The bench's nets as a PyTorch user writes them (issue 17's side-by-side): LeNet-5, the DCGAN
discriminator and WRN-40-2, each the same architecture as nfk's zoo net of that name, so that one
TorchScript file saved from here is what both nfk and the user's script fit."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from functorch_alg4 import LeNet5


class DcganD(nn.Module):  # nfk zoo "dcgan-d" (channels 3, image_size 32, width 64): 142,529 params
    def __init__(self, channels=3, image_size=32, width=64):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, width, 4, stride=2, padding=1)
        self.conv2 = nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)
        self.head = nn.Linear(2 * width * (image_size // 4) ** 2, 1)

    def forward(self, x):
        h = F.leaky_relu(self.conv1(x), 0.2)
        h = F.leaky_relu(self.conv2(h), 0.2).flatten(1)
        return self.head(h).squeeze(1)


class WideBlock(nn.Module):  # pre-activation wide basic block, as zoo_wrn.cpp
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.project = cin != cout or stride != 1
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=stride, bias=False) if self.project \
            else nn.Identity()

    def forward(self, x):
        a = F.relu(self.bn1(x))
        h = F.relu(self.bn2(self.conv1(a)))
        return self.conv2(h) + (self.shortcut(a) if self.project else x)


class WideResNet(nn.Module):  # nfk zoo "wrn" (depth 40, widen_factor 2: 2,243,546 params)
    def __init__(self, depth=40, widen_factor=2, in_channels=3, num_classes=10):
        super().__init__()
        n = (depth - 4) // 6
        widths = [16 * widen_factor, 32 * widen_factor, 64 * widen_factor]
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        blocks, cin = [], 16
        for g, (w, s) in enumerate(zip(widths, [1, 2, 2])):
            group = []
            for b in range(n):
                group.append(WideBlock(cin, w, s if b == 0 else 1))
                cin = w
            blocks.append(nn.Sequential(*group))
        self.group1, self.group2, self.group3 = blocks
        self.bn = nn.BatchNorm2d(cin)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def forward(self, x):
        h = self.group3(self.group2(self.group1(self.conv1(x))))
        return self.fc(F.relu(self.bn(h)).mean((2, 3)))


# net name → (constructor, nfk --kind, the score s(x) from the module's output, data)
NETS = {
    "lenet5": (LeNet5, "classifier", lambda out: torch.logsumexp(out, dim=1), "mnist"),
    "dcgan-d": (DcganD, "score", lambda out: out, "noise"),
    "wrn-40-2": (WideResNet, "classifier", lambda out: torch.logsumexp(out, dim=1), "noise"),
}


def noise(n, path=None):
    """The fit bench's data for the 3×32×32 nets: uniform [0, 1) images, seed 0."""
    import numpy as np
    x = np.random.default_rng(0).random((n, 3, 32, 32), dtype=np.float32)
    if path:
        np.save(path, x)
    return torch.from_numpy(x)

"""Writes the models and data that tests/cli/reliability.sh feeds to nfk.

Usage: python3 make_reliability_inputs.py OUTDIR   (needs torch and numpy)
"""
import os
import sys
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F



class Classifier(nn.Module):
    """[B,1,8,8] -> logits [B,3] (TorchScript has no super(): subclasses call logits)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def logits(self, x):
        return self.fc(torch.tanh(self.conv(x)).flatten(1))

    def forward(self, x):
        return self.logits(x)


class LogSoftmaxClassifier(Classifier):
    """Ends in log_softmax, as PyTorch's MNIST example does: its free energy is constant."""

    def forward(self, x):
        return F.log_softmax(self.logits(x), dim=1)


class SoftmaxClassifier(Classifier):
    def forward(self, x):
        return F.softmax(self.logits(x), dim=1)


class LinearClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 3)

    def forward(self, x):
        return self.fc(x.flatten(1))


class DropoutClassifier(Classifier):
    def __init__(self):
        super().__init__()
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.logits(self.drop(x))


class NanWhereNegative(Classifier):
    """Logits times sqrt of the first pixel: NaN for the examples where it is negative."""

    def forward(self, x):
        return self.logits(x) * torch.sqrt(x[:, :, 0, 0])


class NanDiscriminator(nn.Module):
    """D(x) [B, 1], NaN where the first pixel is negative."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 1)

    def forward(self, x):
        return self.fc(x.flatten(1)) * torch.sqrt(x[:, :, 0, 0])


class PositiveGenerator(nn.Module):
    """h [B, 4] -> [B, 1, 8, 8] in (0, 1): the discriminator is finite on its samples."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 64)

    def forward(self, h):
        return torch.sigmoid(self.fc(h)).view(-1, 1, 8, 8)


class TransformerClassifier(nn.Module):
    """Rows of the 8x8 image as 8 tokens through nn.TransformerEncoderLayer (batch_first)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(8, 24)
        self.encoder = nn.TransformerEncoderLayer(24, 4, 48, dropout=0.0, batch_first=True)
        self.head = nn.Linear(24, 3)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x.reshape(x.size(0), 8, 8))).mean(1))


def main():
    out = sys.argv[1]
    warnings.simplefilter("ignore")  # TorchScript's notes on nn.TransformerEncoderLayer
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    torch.jit.script(Classifier().eval()).save(os.path.join(out, "clf.pt"))
    torch.jit.script(LogSoftmaxClassifier().eval()).save(os.path.join(out, "clf_logsoftmax.pt"))
    torch.jit.script(SoftmaxClassifier().eval()).save(os.path.join(out, "clf_softmax.pt"))
    torch.jit.script(LinearClassifier().eval()).save(os.path.join(out, "clf_linear.pt"))
    torch.jit.script(DropoutClassifier().train()).save(os.path.join(out, "clf_train.pt"))
    torch.jit.script(NanWhereNegative().eval()).save(os.path.join(out, "clf_nan_some.pt"))

    torch.jit.script(NanDiscriminator().eval()).save(os.path.join(out, "disc_nan_some.pt"))
    torch.jit.script(PositiveGenerator().eval()).save(os.path.join(out, "gen_positive.pt"))
    tf = TransformerClassifier().eval()
    torch.jit.script(tf).save(os.path.join(out, "transformer_scripted.pt"))
    example = torch.randn(10, 1, 8, 8)
    torch.jit.trace(tf, example, check_trace=False).save(os.path.join(out, "transformer_traced.pt"))
    with torch.no_grad():  # records PyTorch's fused fast path, which has no gradient
        torch.jit.trace(tf, example, check_trace=False).save(
            os.path.join(out, "transformer_traced_nograd.pt"))

    x = rng.standard_normal((20, 1, 8, 8)).astype(np.float32)
    np.save(os.path.join(out, "x.npy"), x)
    np.save(os.path.join(out, "x_small.npy"), x[:3])
    np.save(os.path.join(out, "x_240.npy"), rng.standard_normal((240, 1, 8, 8)).astype(np.float32))
    # Finite but huge: the Fisher vectors overflow float32.
    np.save(os.path.join(out, "x_huge.npy"), (x / np.abs(x).max() * 3e38).astype(np.float32))
    # Every first pixel positive but row 5's: NanWhereNegative gives NaN there first.
    xp = np.abs(x)
    xp[5, 0, 0, 0] = -1.0
    xp[9, 0, 0, 0] = -1.0
    np.save(os.path.join(out, "x_neg5.npy"), xp)
    np.save(os.path.join(out, "x_pos.npy"), np.abs(x))
    # Data at 1e-10: in float32 the first layer's input barely moves its output, the later
    # layers' gradients are (nearly) equal for every example and their I tiny.
    np.save(os.path.join(out, "x_tiny.npy"), (x * 1e-10).astype(np.float32))


if __name__ == "__main__":
    main()

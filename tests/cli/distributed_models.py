"""TorchScript models of distributed.sh: a small MLP classifier and a tiny VAE."""
import torch


class Vae(torch.nn.Module):
    """ELBO with one reparameterised draw: a stochastic score (noise seeded per batch by nfk)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.enc = torch.nn.Linear(784, 8)
        self.dec = torch.nn.Linear(4, 784)

    @torch.jit.export
    def elbo(self, x):
        x = x.flatten(1)
        h = self.enc(x)
        mu, logvar = h[:, :4], h[:, 4:]
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        rec = -torch.nn.functional.binary_cross_entropy_with_logits(
            self.dec(z), x, reduction="none").sum(1)
        return rec - 0.5 * (mu * mu + logvar.exp() - 1 - logvar).sum(1)

    @torch.jit.export
    def sample(self, n: int):
        z = torch.randn(n, 4, dtype=self.dec.weight.dtype)
        return torch.sigmoid(self.dec(z)).view(n, 1, 28, 28)

    def forward(self, x):
        return self.elbo(x)


def make(out_dir):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 16), torch.nn.Tanh(),
                              torch.nn.Linear(16, 10))
    torch.jit.script(net.eval()).save(out_dir + "/mlp.pt")
    torch.jit.script(Vae().eval()).save(out_dir + "/vae.pt")

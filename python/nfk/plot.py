"""Figures with matplotlib (Debian: python3-matplotlib), in the manner of scikit-learn's
``*Display`` objects: each function draws on ``ax`` (a new figure when None) and returns a
Display holding ``figure_``, ``ax_`` and the data it drew.

    nfk.plot.spectrum(m)                       # sigma^2 and the cumulative explained variance
    nfk.plot.class_distances(D, names)         # a heatmap of a [C, C] distance matrix
    nfk.plot.image_grid(images, titles)        # rows of images: neighbours, inversions, samples
    nfk.plot.monitor(history)                  # metrics over epochs (e.g. GAN Fisher similarity)
    d.figure_.savefig("f.svg")                 # PNG, SVG, PDF by suffix
"""
import numpy as np


class Display:
    """What a plot function drew: ``figure_``, ``ax_`` (or ``axes_``) and its data."""

    def __init__(self, figure, ax, **data):
        self.figure_, self.ax_ = figure, ax
        self.__dict__.update(data)

    def savefig(self, path, **kwargs):
        """Writes the figure (format by suffix: .png, .svg, .pdf); returns self."""
        self.figure_.savefig(path, bbox_inches="tight", **kwargs)
        return self


def _axes(ax, **subplots):
    if ax is not None:
        return ax.figure, ax
    import matplotlib.pyplot as plt

    return plt.subplots(**subplots)


def _numpy(a):
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def spectrum(spec, ax=None, log=True):
    """The NFK spectrum: eigenvalues sigma^2 per component (bars, log scale) and the cumulative
    explained-variance ratio (line, right axis). ``spec`` is a fitted NFK, its ``spectrum_``
    dict, or the JSON of ``nfk spectrum --json`` loaded as a dict."""
    if hasattr(spec, "spectrum"):
        spec = spec.spectrum()
    eig = np.asarray(spec["eigenvalues"], dtype=float)
    ratio = np.asarray(spec["explained_variance_ratio"], dtype=float)
    fig, ax = _axes(ax, figsize=(6, 3.5))
    k = np.arange(1, eig.size + 1)
    ax.bar(k, eig, color="tab:blue", label=r"$\sigma^2$")
    if log and np.all(eig > 0):
        ax.set_yscale("log")
    ax.set_xlabel("component")
    ax.set_ylabel(r"eigenvalue $\sigma^2$")
    cum = ax.twinx()
    cum.plot(k, np.cumsum(ratio), color="tab:orange", marker=".", label="cumulative")
    cum.set_ylim(0, 1)
    cum.set_ylabel("explained variance (cumulative)")
    ax.set_title(f"NFK spectrum ({spec.get('method', '')}, N = {spec.get('n_examples', '?')}, "
                 f"P = {spec.get('n_params', '?')})")
    return Display(fig, ax, eigenvalues=eig, explained_variance_ratio=ratio, twin_ax_=cum)


def class_distances(distances, labels=None, ax=None, cmap="viridis", annotate=True):
    """A heatmap of a class-to-class distance matrix [C, C] (``nfk.class_distances``)."""
    d = _numpy(distances).astype(float)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"nfk.plot: distances must be a square matrix [C, C], got {d.shape}")
    labels = [str(i) for i in range(d.shape[0])] if labels is None else [str(n) for n in labels]
    fig, ax = _axes(ax, figsize=(1 + 0.5 * d.shape[0], 0.8 + 0.5 * d.shape[0]))
    im = ax.imshow(d, cmap=cmap)
    ax.set_xticks(range(d.shape[0]), labels, rotation=45 if max(map(len, labels)) > 2 else 0)
    ax.set_yticks(range(d.shape[0]), labels)
    fig.colorbar(im, ax=ax, label="Fisher distance")
    if annotate and d.shape[0] <= 12:
        finite = d[np.isfinite(d)]
        mid = (finite.min() + finite.max()) / 2 if finite.size else 0
        for (i, j), v in np.ndenumerate(d):  # whole numbers up to 99999: no exponent in a cell
            text = f"{v:.0f}" if 10 <= abs(v) < 1e5 else f"{v:.2g}"
            ax.text(j, i, text, ha="center", va="center", fontsize=7,
                    color="white" if v < mid else "black")
    ax.set_title("class-mean Fisher distances")
    return Display(fig, ax, distances=d, image_=im)


def image_grid(images, titles=None, row_labels=None, ncols=None, cmap="gray"):
    """A grid of images: [N, ...] wrapped into ``ncols`` columns, or rows of images (a query
    and its neighbours, an input and its inversions): [R, C, H, W] with ``row_labels``, or
    [R, C, channels, H, W]. An image is [H, W], [1, H, W] or [3, H, W] (channels first, as torch
    has them) or [H, W, 3]."""
    import matplotlib.pyplot as plt

    imgs = _numpy(images).astype(float)
    grid = imgs.ndim == 5 or (imgs.ndim == 4 and row_labels is not None and ncols is None)
    if not grid:
        n = imgs.shape[0]
        ncols = ncols or min(n, 8)
        rows = -(-n // ncols)
        pad = np.full((rows * ncols - n,) + imgs.shape[1:], np.nan)
        imgs = np.concatenate([imgs, pad]).reshape((rows, ncols) + imgs.shape[1:])
    rows, cols = imgs.shape[:2]
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.3 * rows + 0.3), squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax, img = axes[r, c], imgs[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if img.ndim == 3 and img.shape[0] in (1, 3):
                img = np.moveaxis(img, 0, -1)
            if img.ndim == 3 and img.shape[-1] == 1:
                img = img[..., 0]
            if not np.all(np.isnan(img)):
                ax.imshow(np.clip(img, 0, 1), cmap=cmap, vmin=0, vmax=1)  # no per-image rescaling
            else:
                ax.axis("off")
            if titles is not None and r * cols + c < len(np.ravel(titles)):
                ax.set_title(str(np.ravel(titles)[r * cols + c]), fontsize=7)
        if row_labels is not None and r < len(row_labels):
            axes[r, 0].set_ylabel(str(row_labels[r]), fontsize=8)
    return Display(fig, axes[0, 0], axes_=axes, images=imgs)


def monitor(history, keys=None, x="epoch", ax=None):
    """Metrics over training: ``history`` is a list of dicts (one per epoch/step, e.g. the lines
    of a training log) or a dict of equal-length lists; ``keys`` the metrics to draw (default:
    every numeric one but ``x``)."""
    if isinstance(history, dict):
        cols = {k: list(v) for k, v in history.items()}
    else:
        cols = {}
        for row in history:
            for k, v in row.items():
                cols.setdefault(k, []).append(v)
    if keys is None:
        keys = [k for k, v in cols.items() if k != x and
                all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in v)]
    if not keys:
        raise ValueError("nfk.plot.monitor: no numeric metric to draw")
    steps = cols.get(x, list(range(len(cols[keys[0]]))))
    fig, ax = _axes(ax, figsize=(6, 3.5))
    for k in keys:
        ax.plot(steps, cols[k], marker=".", label=k)
    ax.set_xlabel(x)
    ax.legend()
    return Display(fig, ax, history=cols, keys=list(keys))


def _array(path):
    """An array from .npy, or from JSON: a nested list, or {"shape": [...], "values": [...]}
    (what the CLI writes)."""
    import json

    if not path.endswith(".json"):
        return np.load(path)
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if isinstance(data, dict):
        return np.asarray(data["values"], dtype=float).reshape(data["shape"])
    return np.asarray(data, dtype=float)


def main(argv=None):
    """``python -m nfk plot KIND DATA OUT``: the figure of a data file, as the CLI draws its
    --plot/--grid/--heatmap figures (it runs this file as a script): ``spectrum S.json``
    (``nfk spectrum --json``), ``class-distances D.npy|.json``, ``image-grid X.npy|.json``
    ([N, C, H, W] in [0, 1]), ``monitor H.json`` (a list of dicts or a dict of lists). OUT's
    suffix picks PNG, SVG or PDF. Exit 1 with one line on an error."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(prog="python -m nfk plot", description=main.__doc__)
    parser.add_argument("kind", choices=["spectrum", "class-distances", "image-grid", "monitor"])
    parser.add_argument("data")
    parser.add_argument("out")
    parser.add_argument("--labels", nargs="*", help="class names (class-distances)")
    parser.add_argument("--ncols", type=int, help="columns (image-grid)")
    parser.add_argument("--title", help="the figure's title")
    args = parser.parse_args(argv)
    try:
        import matplotlib

        matplotlib.use("Agg")
        if args.kind in ("spectrum", "monitor"):
            with open(args.data, encoding="utf-8") as f:
                data = json.load(f)
            disp = spectrum(data) if args.kind == "spectrum" else monitor(data)
        else:
            data = _array(args.data)
            disp = (class_distances(data, args.labels) if args.kind == "class-distances"
                    else image_grid(data, ncols=args.ncols))
        if args.title:
            disp.figure_.suptitle(args.title)
        disp.savefig(args.out)
    except Exception as e:  # one line, as the CLI prints its errors
        print(f"nfk plot: {args.kind} {args.data} -> {args.out}: {type(e).__name__}: {e}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # the CLI runs this file by path (no nfk import needed)
    raise SystemExit(main())

"""nfk.plot: matplotlib figures returned as Display objects (figure_, ax_), saved by suffix."""
import numpy as np
import pytest

import nfk

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def test_spectrum(fitted, tmp_path):
    disp = nfk.plot.spectrum(fitted)
    assert isinstance(disp.figure_, matplotlib.figure.Figure)
    assert isinstance(disp.ax_, matplotlib.axes.Axes)
    assert len(disp.ax_.patches) == fitted.rank  # one bar per component
    np.testing.assert_allclose(disp.eigenvalues, fitted.singular_values_.astype(float) ** 2,
                               rtol=1e-5)
    line = disp.twin_ax_.lines[0].get_ydata()
    np.testing.assert_allclose(line, np.cumsum(fitted.explained_variance_ratio_))
    for suffix in ("png", "svg", "pdf"):
        disp.savefig(tmp_path / f"s.{suffix}")
        assert (tmp_path / f"s.{suffix}").stat().st_size > 1000
    # The same from the dict of `nfk spectrum --json`, on given axes.
    fig, ax = matplotlib.pyplot.subplots()
    assert nfk.plot.spectrum(fitted.spectrum_, ax=ax).ax_ is ax


def test_class_distances_heatmap(fitted, x):
    y = np.arange(len(x)) % 3
    d = nfk.class_distances(fitted, x, y)
    disp = nfk.plot.class_distances(d, ["a", "b", "c"])
    assert disp.image_.get_array().shape == (3, 3)
    assert [t.get_text() for t in disp.ax_.get_xticklabels()] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="square"):
        nfk.plot.class_distances(np.zeros((2, 3)))


def test_image_grid_and_monitor(x):
    disp = nfk.plot.image_grid(x[:10], titles=[str(i) for i in range(10)], ncols=5)
    assert disp.axes_.shape == (2, 5) and disp.axes_[1, 4].get_title() == "9"
    rows = nfk.plot.image_grid(x[:6].reshape(2, 3, 8, 8), row_labels=["query 1", "query 2"])
    assert rows.axes_.shape == (2, 3) and rows.axes_[1, 0].get_ylabel() == "query 2"
    hist = [{"epoch": e, "fisher_similarity": 1 / (1 + e), "d_loss": 0.5} for e in range(5)]
    disp = nfk.plot.monitor(hist)
    assert [t.get_text() for t in disp.ax_.get_legend().get_texts()] == ["fisher_similarity",
                                                                        "d_loss"]
    with pytest.raises(ValueError, match="no numeric metric"):
        nfk.plot.monitor({"epoch": [1, 2], "note": ["a", "b"]})


def test_command_line_hook(fitted, tmp_path):
    """``python -m nfk plot``: the CLI's way to draw (a data file in, a figure out)."""
    import json
    import subprocess
    import sys

    (tmp_path / "s.json").write_text(json.dumps(fitted.spectrum_))
    r = subprocess.run([sys.executable, "-m", "nfk", "plot", "spectrum", tmp_path / "s.json",
                        tmp_path / "s.svg"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s.svg").read_text().lstrip().startswith("<?xml")
    r = subprocess.run([sys.executable, "-m", "nfk", "plot", "class-distances",
                        tmp_path / "missing.npy", tmp_path / "d.png"], capture_output=True,
                       text=True)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1, r.stderr

#pragma once
// The CLI's figures (--plot, --grid, --heatmap, the trainers' sample grids), drawn by nfk's one
// plotting implementation: the Python package's matplotlib module, python/nfk/plot.py (also
// `python -m nfk plot`). The CLI writes a figure's data to a private temporary folder, runs
//   $NFK_PYTHON plot.py KIND DATA FIGURE [--title T] [--labels ...] [--ncols C]
// and then writes FIGURE's bytes to the user's path atomically, like every nfk output. The format
// follows the path's suffix: .png, .svg or .pdf.
// Python: $NFK_PYTHON, else /usr/bin/python3 (Debian's, with python3-matplotlib), else python3 on
// PATH. The script: $NFK_PLOT_SCRIPT, else share/nfk/plot.py beside the nfk binary (the build
// tree) or in ../share/nfk (an installed tree).
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace nfk::cli {

/// "" when figures can be drawn here, else why not (one line); asked once per process.
std::string figures_unavailable();

/// Throws one line, before any work, if `path` (the value of `flag`) cannot be drawn: a suffix
/// other than .png, .svg or .pdf, or no Python with matplotlib. Nothing for an empty path.
void check_figure(const std::string& flag, const std::string& path);

/// Whether the trainers' sample pictures can be drawn. Where not, warns once (one line) and the
/// training goes on without them.
bool pictures_possible();

/// The NFK spectrum (`nfk spectrum --json`'s object): σ² bars and the cumulative ratio.
void plot_spectrum(const std::string& path, const nlohmann::json& spectrum);
/// Metrics by epoch: `history` is a list of objects with an "epoch" field.
void plot_monitor(const std::string& path, const nlohmann::json& history, const std::string& title);
/// A heatmap of a [C, C] distance matrix, classes labelled 0..C-1.
void plot_class_distances(const std::string& path, const torch::Tensor& distances);
/// Images [N, C, H, W] in [0, 1] (C = 1 or 3), `columns` per row.
void plot_images(const std::string& path, const torch::Tensor& images, int64_t columns);

}  // namespace nfk::cli

#pragma once
/// nfk pictures: small self-contained SVG and PNG renderings (no plotting dependency).

#include <torch/torch.h>

#include <string>

#include "nfk/embed.h"

namespace nfk {

/// The NFK spectrum of a projector as an SVG document: eigenvalues σ² on a log scale (left
/// axis, bars) and the cumulative explained-variance ratio (right axis, line).
std::string spectrum_svg(const Projector& projector);

/// The same chart as `spectrum_svg` rasterised on a 640×400 canvas: uint8 [3, 400, 640] RGB
/// (bars of σ² on a log axis with decade labels, cumulative explained-variance line on a right
/// 0-100% axis, title, axis labels). The projector must have at least one singular value.
torch::Tensor spectrum_png_image(const Projector& projector);

/// Writes the spectrum chart of `projector` to `path` atomically, in the format named by the
/// extension (case-insensitive): .svg → `spectrum_svg`, .png → `spectrum_png_image` as a PNG.
/// Any other name throws "nfk: plot <path>: use a .svg or .png file name".
void write_spectrum_plot(const std::string& path, const Projector& projector);

}  // namespace nfk

#pragma once
/// nfk pictures: small self-contained SVG renderings (no plotting dependency).

#include <string>

#include "nfk/embed.h"

namespace nfk {

/// The NFK spectrum of a projector as an SVG document: eigenvalues σ² on a log scale (left
/// axis, bars) and the cumulative explained-variance ratio (right axis, line).
std::string spectrum_svg(const Projector& projector);

/// Writes `spectrum_svg` to `path` atomically; `path` must end in .svg.
void write_spectrum_plot(const std::string& path, const Projector& projector);

}  // namespace nfk

#include <cmath>
#include <sstream>

#include "detail/atomic_file.h"
#include "nfk/plot.h"

namespace nfk {

std::string spectrum_svg(const Projector& p) {
  const double w = 640, h = 400, left = 70, right = 70, top = 40, bottom = 50;
  const double pw = w - left - right, ph = h - top - bottom;
  auto eig = p.singular_values.to(torch::kFloat64).square().contiguous();
  auto cum = p.explained_variance_ratio().cumsum(0).contiguous();
  const int64_t k = eig.numel();
  const double* e = eig.data_ptr<double>();
  const double* c = cum.data_ptr<double>();
  double lo = std::log10(std::max(e[k - 1], 1e-300)), hi = std::log10(std::max(e[0], 1e-300));
  if (hi - lo < 1) lo = hi - 1;
  lo = std::floor(lo);
  hi = std::ceil(hi);
  const double bar = pw / k;

  std::ostringstream s;
  s.precision(4);
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w << "' height='" << h
    << "' font-family='sans-serif' font-size='12'>\n"
    << "<rect width='100%' height='100%' fill='white'/>\n"
    << "<text x='" << w / 2 << "' y='22' text-anchor='middle' font-size='14'>NFK spectrum: "
    << to_string(p.kind) << ", " << p.n_examples << " examples, " << p.n_params()
    << " parameters (" << to_string(p.method) << ")</text>\n";
  for (double d = lo; d <= hi; d += 1) {  // log grid for eigenvalues
    const double y = top + ph * (hi - d) / (hi - lo);
    s << "<line x1='" << left << "' y1='" << y << "' x2='" << left + pw << "' y2='" << y
      << "' stroke='#ddd'/><text x='" << left - 6 << "' y='" << y + 4
      << "' text-anchor='end'>1e" << d << "</text>\n";
  }
  for (int64_t i = 0; i < k; ++i) {
    const double v = std::log10(std::max(e[i], 1e-300));
    const double y = top + ph * (hi - std::max(v, lo)) / (hi - lo);
    s << "<rect x='" << left + i * bar + 0.1 * bar << "' y='" << y << "' width='" << 0.8 * bar
      << "' height='" << top + ph - y << "' fill='#4c72b0'/>\n";
  }
  s << "<polyline fill='none' stroke='#dd5500' stroke-width='2' points='";
  for (int64_t i = 0; i < k; ++i) {
    s << left + (i + 0.5) * bar << "," << top + ph * (1 - std::min(c[i], 1.0)) << " ";
  }
  s << "'/>\n";
  for (int q = 0; q <= 4; ++q) {  // right axis: cumulative ratio
    const double y = top + ph * (1 - q / 4.0);
    s << "<text x='" << left + pw + 6 << "' y='" << y + 4 << "' fill='#dd5500'>" << q * 25
      << "%</text>\n";
  }
  s << "<rect x='" << left << "' y='" << top << "' width='" << pw << "' height='" << ph
    << "' fill='none' stroke='black'/>\n"
    << "<text x='" << left + pw / 2 << "' y='" << h - 15
    << "' text-anchor='middle'>component (1.." << k << ")</text>\n"
    << "<text x='16' y='" << top + ph / 2 << "' transform='rotate(-90 16 " << top + ph / 2
    << ")' text-anchor='middle' fill='#4c72b0'>eigenvalue sigma^2</text>\n"
    << "<text x='" << w - 14 << "' y='" << top + ph / 2 << "' transform='rotate(90 " << w - 14
    << " " << top + ph / 2 << ")' text-anchor='middle' fill='#dd5500'>cumulative explained "
    << "variance" << (p.total_variance_exact ? "" : " (est.)") << "</text>\n</svg>\n";
  return s.str();
}

void write_spectrum_plot(const std::string& path, const Projector& projector) {
  TORCH_CHECK(path.size() > 4 && path.substr(path.size() - 4) == ".svg", "nfk: plot ", path,
              ": only .svg output is supported");
  detail::write_file_atomic(path, spectrum_svg(projector));
}

}  // namespace nfk

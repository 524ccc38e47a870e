#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>

#include "nfk/output_files.h"
#include "nfk/image.h"
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
    << "<text x='" << w / 2
    << "' y='22' text-anchor='middle' font-size='14'>NFK spectrum: " << to_string(p.kind) << ", "
    << p.n_examples << " examples, " << p.n_params() << " parameters (" << to_string(p.method)
    << ")</text>\n";
  for (double d = lo; d <= hi; d += 1) {  // log grid for eigenvalues
    const double y = top + ph * (hi - d) / (hi - lo);
    s << "<line x1='" << left << "' y1='" << y << "' x2='" << left + pw << "' y2='" << y
      << "' stroke='#ddd'/><text x='" << left - 6 << "' y='" << y + 4 << "' text-anchor='end'>1e"
      << d << "</text>\n";
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
    << "<text x='" << left + pw / 2 << "' y='" << h - 15 << "' text-anchor='middle'>component (1.."
    << k << ")</text>\n"
    << "<text x='16' y='" << top + ph / 2 << "' transform='rotate(-90 16 " << top + ph / 2
    << ")' text-anchor='middle' fill='#4c72b0'>eigenvalue sigma^2</text>\n"
    << "<text x='" << w - 14 << "' y='" << top + ph / 2 << "' transform='rotate(90 " << w - 14
    << " " << top + ph / 2 << ")' text-anchor='middle' fill='#dd5500'>cumulative explained "
    << "variance" << (p.total_variance_exact ? "" : " (est.)") << "</text>\n</svg>\n";
  return s.str();
}

namespace {

// Smallest of 1, 2, 5 × 10^n that is >= x.
int64_t nice_step(double x) {
  if (!(x > 1)) return 1;  // also NaN
  int64_t p = 1;
  for (;;) {
    for (int64_t m : {1, 2, 5}) {
      if (m * p >= x) return m * p;
    }
    p *= 10;
  }
}

bool ends_with_ci(const std::string& s, const std::string& suffix) {
  if (s.size() <= suffix.size()) return false;
  // `suffix` is lower case; the path's tail may be any case.
  return std::equal(suffix.begin(), suffix.end(), s.end() - suffix.size(), [](char lower, char c) {
    return std::tolower(static_cast<unsigned char>(c)) == lower;
  });
}

}  // namespace

torch::Tensor spectrum_png_image(const Projector& p) {
  TORCH_CHECK(p.singular_values.defined() && p.singular_values.numel() > 0,
              "nfk: plot: the projector has no singular values");
  using Color = Canvas::Color;
  using Dir = Canvas::TextDirection;
  const Color black{0, 0, 0}, grid{221, 221, 221}, blue{76, 114, 176}, orange{221, 85, 0};
  const int64_t w = 640, h = 400, left = 70, right = 70, top = 40, bottom = 50;
  const int64_t pw = w - left - right, ph = h - top - bottom;
  auto eig = p.singular_values.detach().to(torch::kCPU, torch::kFloat64).square().contiguous();
  auto cum = p.explained_variance_ratio().cumsum(0).contiguous();
  const int64_t k = eig.numel();
  const double* e = eig.data_ptr<double>();
  const double* c = cum.data_ptr<double>();
  // Log range over the positive eigenvalues (zeros sit on the floor), whole decades.
  double lo = HUGE_VAL, hi = -HUGE_VAL;
  for (int64_t i = 0; i < k; ++i) {
    if (e[i] > 0 && std::isfinite(e[i])) {
      lo = std::min(lo, std::log10(e[i]));
      hi = std::max(hi, std::log10(e[i]));
    }
  }
  if (lo > hi) lo = hi = 0;
  if (hi - lo < 1) lo = hi - 1;
  lo = std::floor(lo);
  hi = std::ceil(hi);
  auto y_of_log = [&](double d) { return top + ph * (hi - d) / (hi - lo); };
  auto y_of_ratio = [&](double r) {
    r = std::isfinite(r) ? std::clamp(r, 0.0, 1.0) : 0.0;
    return top + ph * (1 - r);
  };
  const double bar = static_cast<double>(pw) / k;

  Canvas cv(w, h);
  const int64_t th = Canvas::text_height();
  // Title: larger when it fits.
  std::ostringstream title;
  title << "NFK spectrum: " << to_string(p.kind) << ", " << p.n_examples << " examples, "
        << p.n_params() << " parameters (" << to_string(p.method) << ")";
  const int title_scale = Canvas::text_width(title.str(), 2) <= w - 20 ? 2 : 1;
  cv.text((w - Canvas::text_width(title.str(), title_scale)) / 2,
          20 - Canvas::text_height(title_scale) / 2, title.str(), black, title_scale,
          Dir::kHorizontal, /*bold=*/title_scale == 1);

  // Left axis: a grid line and label every `step` decades, labels at least ~2 lines apart.
  const int64_t decades = static_cast<int64_t>(hi - lo);
  const int64_t step = nice_step(decades * (2.0 * th + 4) / ph);
  for (int64_t d = 0; d <= decades; d += step) {
    const double dec = hi - d;
    const int64_t y = std::lround(y_of_log(dec));
    cv.line(left, y, left + pw, y, grid);
    cv.line(left - 4, y, left - 1, y, black);
    const std::string label = "1e" + std::to_string(static_cast<int64_t>(dec));
    cv.text(left - 7 - Canvas::text_width(label), y - th / 2, label, blue);
  }
  // Right axis: cumulative ratio in quarters.
  for (int q = 0; q <= 4; ++q) {
    const int64_t y = std::lround(y_of_ratio(q / 4.0));
    cv.line(left + pw + 1, y, left + pw + 4, y, orange);
    cv.text(left + pw + 7, y - th / 2, std::to_string(q * 25) + "%", orange);
  }
  // Bars of σ², at least one pixel wide.
  for (int64_t i = 0; i < k; ++i) {
    const double v = e[i] > 0 && std::isfinite(e[i]) ? std::log10(e[i]) : lo;
    const int64_t y = std::lround(y_of_log(std::max(v, lo)));
    const int64_t x0 = std::lround(left + i * bar + 0.1 * bar);
    const int64_t x1 = std::max(std::lround(left + i * bar + 0.9 * bar), x0 + 1);
    cv.fill_rect(x0, y, x1 - x0, top + ph - y, blue);
  }
  // X axis: ticks at component 1 and multiples of a nice step, at the bar centres.
  const int64_t xstep = nice_step(k / 8.0);
  int64_t last_right = -1000;
  for (int64_t i = 1; i <= k; i = (i == 1 && xstep > 1) ? xstep : i + xstep) {
    const int64_t x = std::lround(left + (i - 0.5) * bar);
    const std::string label = std::to_string(i);
    const int64_t lw = Canvas::text_width(label);
    if (x - lw / 2 < last_right + 8) continue;
    cv.line(x, top + ph + 1, x, top + ph + 4, black);
    cv.text(x - lw / 2, top + ph + 7, label, black);
    last_right = x - lw / 2 + lw;
  }
  // Cumulative explained-variance line.
  auto cx = [&](int64_t i) { return std::lround(left + (i + 0.5) * bar); };
  if (k == 1) cv.fill_rect(cx(0) - 2, std::lround(y_of_ratio(c[0])) - 2, 5, 5, orange);
  for (int64_t i = 1; i < k; ++i) {
    cv.line(cx(i - 1), std::lround(y_of_ratio(c[i - 1])), cx(i), std::lround(y_of_ratio(c[i])),
            orange, 2);
  }
  cv.stroke_rect(left, top, pw + 1, ph + 1, black);

  // Axis titles.
  const std::string xlabel = "component (1.." + std::to_string(k) + ")";
  cv.text(left + (pw - Canvas::text_width(xlabel)) / 2, h - 15 - th / 2, xlabel, black);
  const std::string ylabel = "eigenvalue sigma^2";
  cv.text(16 - th / 2, top + (ph - Canvas::text_width(ylabel)) / 2, ylabel, blue, 1, Dir::kUp);
  const std::string rlabel =
      std::string("cumulative explained variance") + (p.total_variance_exact ? "" : " (est.)");
  cv.text(w - 14 - th / 2, top + (ph - Canvas::text_width(rlabel)) / 2, rlabel, orange, 1,
          Dir::kDown);
  return cv.to_tensor();
}

void write_spectrum_plot(const std::string& path, const Projector& projector) {
  if (ends_with_ci(path, ".svg")) {
    write_file_atomic(path, spectrum_svg(projector));
  } else if (ends_with_ci(path, ".png")) {
    write_png(path, spectrum_png_image(projector));
  } else {
    TORCH_CHECK(false, "nfk: plot ", path, ": use a .svg or .png file name");
  }
}

}  // namespace nfk

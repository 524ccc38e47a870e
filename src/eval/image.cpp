#include "nfk/image.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <limits>

#include "nfk/output_files.h"

namespace nfk {
namespace {

// Rows of the 5×7 font for ASCII 32..126, top to bottom; bit 4 is the leftmost column.
// Patterns follow the classic HD44780 character ROM.
constexpr uint8_t kFont[95][7] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00},  // ' '
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04},  // !
    {0x0A, 0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00},  // "
    {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A},  // #
    {0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04},  // $
    {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03},  // %
    {0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D},  // &
    {0x0C, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00},  // '
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02},  // (
    {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08},  // )
    {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00},  // *
    {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00},  // +
    {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08},  // ,
    {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00},  // -
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C},  // .
    {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00},  // /
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E},  // 0
    {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E},  // 1
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F},  // 2
    {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E},  // 3
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02},  // 4
    {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E},  // 5
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E},  // 6
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08},  // 7
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E},  // 8
    {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C},  // 9
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00},  // :
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08},  // ;
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02},  // <
    {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00},  // =
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08},  // >
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04},  // ?
    {0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E},  // @
    {0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11},  // A
    {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E},  // B
    {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E},  // C
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C},  // D
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F},  // E
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10},  // F
    {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F},  // G
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11},  // H
    {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E},  // I
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C},  // J
    {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11},  // K
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F},  // L
    {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11},  // M
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11},  // N
    {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E},  // O
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10},  // P
    {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D},  // Q
    {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11},  // R
    {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E},  // S
    {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04},  // T
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E},  // U
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04},  // V
    {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A},  // W
    {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11},  // X
    {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04},  // Y
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F},  // Z
    {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E},  // [
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00},  // backslash
    {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E},  // ]
    {0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00},  // ^
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F},  // _
    {0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00},  // `
    {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F},  // a
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E},  // b
    {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E},  // c
    {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F},  // d
    {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E},  // e
    {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08},  // f
    {0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // g
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11},  // h
    {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E},  // i
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C},  // j
    {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12},  // k
    {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E},  // l
    {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11},  // m
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11},  // n
    {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E},  // o
    {0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10},  // p
    {0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01},  // q
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10},  // r
    {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E},  // s
    {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06},  // t
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D},  // u
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04},  // v
    {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A},  // w
    {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11},  // x
    {0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // y
    {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F},  // z
    {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02},  // {
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04},  // |
    {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08},  // }
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00},  // ~
};

// matplotlib's viridis sampled at 9 evenly spaced points, interpolated linearly in between.
constexpr float kViridis[9][3] = {
    {68, 1, 84},    {72, 40, 120},  {62, 73, 137},  {49, 104, 142}, {38, 130, 142},
    {31, 158, 137}, {53, 183, 121}, {110, 206, 88}, {253, 231, 37},
};

void put_be32(std::string& out, uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(b, 4);
}

// Appends one PNG chunk: length, type, data, CRC-32 of type + data.
void put_chunk(std::string& out, const char* type, const std::string& data) {
  put_be32(out, static_cast<uint32_t>(data.size()));
  const size_t start = out.size();
  out.append(type, 4);
  out += data;
  const auto* p = reinterpret_cast<const Bytef*>(out.data() + start);
  put_be32(out, static_cast<uint32_t>(crc32(crc32(0L, Z_NULL, 0), p, 4 + data.size())));
}

}  // namespace

std::string encode_png(const torch::Tensor& image) {
  TORCH_CHECK(image.defined(), "nfk: png: the image is undefined");
  const auto dim = image.dim();
  TORCH_CHECK(dim == 2 || (dim == 3 && (image.size(0) == 1 || image.size(0) == 3)),
              "nfk: png: expected an image [H, W], [1, H, W] or [3, H, W], got ", image.sizes());
  TORCH_CHECK(image.scalar_type() == torch::kUInt8 || image.is_floating_point(),
              "nfk: png: expected uint8 or floating pixels, got ", image.scalar_type());
  torch::Tensor u8 = image.detach().to(torch::kCPU);
  if (u8.is_floating_point()) {
    u8 =
        u8.to(torch::kFloat32).nan_to_num(0.0).clamp(0.0, 1.0).mul(255.0).round().to(torch::kUInt8);
  }
  const int64_t channels = dim == 2 ? 1 : u8.size(0);
  const int64_t h = u8.size(-2), w = u8.size(-1);
  TORCH_CHECK(h > 0 && w > 0 && h < (int64_t{1} << 31) && w < (int64_t{1} << 31),
              "nfk: png: image size must be 1..2^31-1 pixels a side, got ", u8.sizes());
  // Interleave channels: [H, W, C] rows, each preceded by filter byte 0 (none).
  auto hwc = (dim == 2 ? u8.unsqueeze(-1) : u8.permute({1, 2, 0})).contiguous();
  const int64_t row = w * channels;
  std::string raw(static_cast<size_t>(h * (row + 1)), '\0');
  const uint8_t* src = hwc.data_ptr<uint8_t>();
  for (int64_t y = 0; y < h; ++y) {
    std::copy(src + y * row, src + (y + 1) * row, raw.begin() + y * (row + 1) + 1);
  }
  uLongf zsize = compressBound(static_cast<uLong>(raw.size()));
  std::string z(zsize, '\0');
  const int rc =
      compress2(reinterpret_cast<Bytef*>(&z[0]), &zsize, reinterpret_cast<const Bytef*>(raw.data()),
                static_cast<uLong>(raw.size()), Z_DEFAULT_COMPRESSION);
  TORCH_CHECK(rc == Z_OK, "nfk: png: zlib compression failed (code ", rc, ")");
  z.resize(zsize);

  std::string ihdr;
  put_be32(ihdr, static_cast<uint32_t>(w));
  put_be32(ihdr, static_cast<uint32_t>(h));
  ihdr += static_cast<char>(8);                      // bit depth
  ihdr += static_cast<char>(channels == 1 ? 0 : 2);  // color type: gray / RGB
  ihdr.append(3, '\0');                              // compression, filter, interlace
  std::string out("\x89PNG\r\n\x1a\n", 8);
  put_chunk(out, "IHDR", ihdr);
  put_chunk(out, "IDAT", z);
  put_chunk(out, "IEND", "");
  return out;
}

void write_png(const std::string& path, const torch::Tensor& image) {
  write_file_atomic(path, encode_png(image));
}

torch::Tensor image_grid(const torch::Tensor& images, int64_t columns, int64_t padding,
                         double pad_value) {
  TORCH_CHECK(images.defined() && images.dim() == 4 && images.size(0) > 0 &&
                  (images.size(1) == 1 || images.size(1) == 3),
              "nfk: image_grid: expected images [N, C, H, W] with N > 0 and C = 1 or 3, got ",
              images.defined() ? images.sizes() : torch::IntArrayRef{});
  TORCH_CHECK(images.is_floating_point(), "nfk: image_grid: expected floating pixels, got ",
              images.scalar_type());
  TORCH_CHECK(columns > 0, "nfk: image_grid: columns must be positive, got ", columns);
  TORCH_CHECK(padding >= 0, "nfk: image_grid: padding must be >= 0, got ", padding);
  const int64_t n = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const int64_t cols = std::min(columns, n), rows = (n + cols - 1) / cols;
  auto grid = torch::full({c, rows * (h + padding) + padding, cols * (w + padding) + padding},
                          pad_value, images.options());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t y = padding + (i / cols) * (h + padding);
    const int64_t x = padding + (i % cols) * (w + padding);
    grid.slice(1, y, y + h).slice(2, x, x + w).copy_(images[i]);
  }
  return grid;
}

torch::Tensor neighbor_grid(const torch::Tensor& query_images, const torch::Tensor& train_images,
                            const torch::Tensor& neighbors, int64_t rows) {
  TORCH_CHECK(neighbors.dim() == 2 && neighbors.size(0) == query_images.size(0),
              "nfk: neighbor_grid needs neighbors [M, k] for M = ", query_images.size(0),
              " queries, got ", neighbors.sizes());
  TORCH_CHECK(query_images.dim() == 4 && train_images.dim() == 4 &&
                  query_images.sizes().slice(1) == train_images.sizes().slice(1),
              "nfk: neighbor_grid needs query and train images of one shape [*, C, H, W]");
  rows = std::min(rows, query_images.size(0));
  TORCH_CHECK(rows > 0, "nfk: neighbor_grid needs at least one query row");
  std::vector<torch::Tensor> tiles;
  for (int64_t i = 0; i < rows; ++i) {
    tiles.push_back(query_images.slice(0, i, i + 1).to(torch::kFloat32));
    tiles.push_back(
        train_images.index_select(0, neighbors[i].to(torch::kLong)).to(torch::kFloat32));
  }
  return image_grid(torch::cat(tiles), /*columns=*/1 + neighbors.size(1));
}

torch::Tensor heatmap_image(const torch::Tensor& matrix, int64_t cell_pixels) {
  TORCH_CHECK(matrix.defined() && matrix.dim() == 2 && matrix.numel() > 0,
              "nfk: heatmap: expected a non-empty matrix [R, C]");
  TORCH_CHECK(!matrix.is_complex() && matrix.scalar_type() != torch::kBool,
              "nfk: heatmap: expected real values, got ", matrix.scalar_type());
  TORCH_CHECK(cell_pixels > 0, "nfk: heatmap: cell_pixels must be positive, got ", cell_pixels);
  auto m = matrix.detach().to(torch::kCPU, torch::kFloat64);
  auto finite = torch::isfinite(m);
  double lo = 0, hi = 0;
  if (finite.any().item<bool>()) {
    auto vals = m.masked_select(finite);
    lo = vals.min().item<double>();
    hi = vals.max().item<double>();
  }
  auto t = hi > lo ? (m - lo) / (hi - lo) : torch::zeros_like(m);
  t = t.nan_to_num(0.0, 0.0, 0.0).clamp(0.0, 1.0);
  const int64_t stops = 9;
  auto table = torch::from_blob(const_cast<float*>(&kViridis[0][0]), {stops, 3}, torch::kFloat32)
                   .to(torch::kFloat64) /
               255.0;
  auto pos = t * static_cast<double>(stops - 1);
  auto i0 = pos.floor().clamp(0, stops - 2).to(torch::kLong);
  auto frac = (pos - i0.to(torch::kFloat64)).unsqueeze(-1);
  auto rgb = table.index({i0}) * (1.0 - frac) + table.index({i0 + 1}) * frac;  // [R, C, 3]
  rgb = torch::where(finite.unsqueeze(-1), rgb, torch::full({}, 0.5, rgb.options()));
  return rgb.permute({2, 0, 1})
      .repeat_interleave(cell_pixels, 1)
      .repeat_interleave(cell_pixels, 2)
      .to(torch::kFloat32)
      .contiguous();
}

// ---------------------------------------------------------------------------------------------
// Canvas

Canvas::Canvas(int64_t width, int64_t height, Color background) : width_(width), height_(height) {
  TORCH_CHECK(width > 0 && height > 0 && width <= (1 << 15) && height <= (1 << 15),
              "nfk: canvas: size must be 1..32768 a side, got ", width, "x", height);
  rgb_.resize(static_cast<size_t>(3 * width * height));
  const size_t plane = static_cast<size_t>(width * height);
  std::fill(rgb_.begin(), rgb_.begin() + plane, background.r);
  std::fill(rgb_.begin() + plane, rgb_.begin() + 2 * plane, background.g);
  std::fill(rgb_.begin() + 2 * plane, rgb_.end(), background.b);
}

void Canvas::set_pixel(int64_t x, int64_t y, Color color) {
  if (x < 0 || y < 0 || x >= width_ || y >= height_) return;
  const size_t plane = static_cast<size_t>(width_ * height_);
  const size_t i = static_cast<size_t>(y * width_ + x);
  rgb_[i] = color.r;
  rgb_[plane + i] = color.g;
  rgb_[2 * plane + i] = color.b;
}

Canvas::Color Canvas::pixel(int64_t x, int64_t y) const {
  TORCH_CHECK(x >= 0 && y >= 0 && x < width_ && y < height_, "nfk: canvas: pixel (", x, ", ", y,
              ") is outside the ", width_, "x", height_, " canvas");
  const size_t plane = static_cast<size_t>(width_ * height_);
  const size_t i = static_cast<size_t>(y * width_ + x);
  return {rgb_[i], rgb_[plane + i], rgb_[2 * plane + i]};
}

void Canvas::fill_rect(int64_t x, int64_t y, int64_t w, int64_t h, Color color) {
  const int64_t x0 = std::max<int64_t>(x, 0), y0 = std::max<int64_t>(y, 0);
  const int64_t x1 = std::min(x + w, width_), y1 = std::min(y + h, height_);
  for (int64_t yy = y0; yy < y1; ++yy) {
    for (int64_t xx = x0; xx < x1; ++xx) set_pixel(xx, yy, color);
  }
}

void Canvas::stroke_rect(int64_t x, int64_t y, int64_t w, int64_t h, Color color) {
  if (w <= 0 || h <= 0) return;
  fill_rect(x, y, w, 1, color);
  fill_rect(x, y + h - 1, w, 1, color);
  fill_rect(x, y, 1, h, color);
  fill_rect(x + w - 1, y, 1, h, color);
}

void Canvas::line(int64_t x0, int64_t y0, int64_t x1, int64_t y1, Color color, int thickness) {
  TORCH_CHECK(thickness >= 1, "nfk: canvas: line thickness must be >= 1, got ", thickness);
  const int64_t dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0);
  const int64_t sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1;
  const int64_t off = (thickness - 1) / 2;
  int64_t err = dx + dy;
  for (;;) {
    fill_rect(x0 - off, y0 - off, thickness, thickness, color);
    if (x0 == x1 && y0 == y1) break;
    const int64_t e2 = 2 * err;
    if (e2 >= dy) {
      err += dy;
      x0 += sx;
    }
    if (e2 <= dx) {
      err += dx;
      y0 += sy;
    }
  }
}

const uint8_t* Canvas::glyph(unsigned char c) {
  if (c < 32 || c > 126) c = '?';
  return kFont[c - 32];
}

int64_t Canvas::text_width(const std::string& text, int scale) {
  if (text.empty()) return 0;
  return (int64_t{kGlyphAdvance} * static_cast<int64_t>(text.size()) - 1) * scale;
}

void Canvas::text(int64_t x, int64_t y, const std::string& text, Color color, int scale,
                  TextDirection direction, bool bold) {
  TORCH_CHECK(scale >= 1, "nfk: canvas: text scale must be >= 1, got ", scale);
  const int64_t length = text_width(text, scale) + (bold ? 1 : 0);
  const int64_t across = text_height(scale);
  // (u, v): position along the text and down across it, in canvas pixels.
  auto plot = [&](int64_t u, int64_t v) {
    switch (direction) {
      case TextDirection::kHorizontal:
        fill_rect(x + u, y + v, 1, 1, color);
        break;
      case TextDirection::kUp:
        fill_rect(x + v, y + length - 1 - u, 1, 1, color);
        break;
      case TextDirection::kDown:
        fill_rect(x + across - 1 - v, y + u, 1, 1, color);
        break;
    }
  };
  for (size_t i = 0; i < text.size(); ++i) {
    const uint8_t* rows = glyph(static_cast<unsigned char>(text[i]));
    const int64_t u0 = static_cast<int64_t>(i) * kGlyphAdvance * scale;
    for (int r = 0; r < kGlyphHeight; ++r) {
      for (int col = 0; col < kGlyphWidth; ++col) {
        if (!(rows[r] >> (kGlyphWidth - 1 - col) & 1)) continue;
        for (int a = 0; a < scale; ++a) {
          for (int b = 0; b < scale; ++b) {
            const int64_t u = u0 + col * scale + b, v = r * scale + a;
            plot(u, v);
            if (bold) plot(u + 1, v);
          }
        }
      }
    }
  }
}

torch::Tensor Canvas::to_tensor() const {
  return torch::from_blob(const_cast<uint8_t*>(rgb_.data()), {3, height_, width_}, torch::kUInt8)
      .clone();
}

}  // namespace nfk

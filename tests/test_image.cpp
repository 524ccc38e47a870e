// Tests for the raster pictures: PNG encoding (decoded back here with zlib), image grids,
// heatmaps, the Canvas and its font, and the PNG spectrum plot.

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "nfk/embed.h"
#include "nfk/image.h"
#include "nfk/plot.h"
#include "support.h"

namespace {

std::string read_bytes(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

uint32_t be32(const std::string& s, size_t at) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data() + at);
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

// A PNG decoded by an independent, minimal reader (8-bit gray/RGB, no interlace, filter 0).
struct Png {
  uint32_t width = 0, height = 0;
  int color_type = -1;
  std::vector<std::string> chunk_types;
  torch::Tensor pixels;  // uint8 [H, W] (gray) or [3, H, W] (RGB)
};

// Parses every chunk (checking lengths and CRCs), inflates IDAT and unfilters rows. Fails the
// current test (and returns what it has) on any inconsistency.
Png decode_png(const std::string& bytes) {
  Png png;
  EXPECT_GE(bytes.size(), 8u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  std::string idat;
  size_t at = 8;
  while (at + 12 <= bytes.size()) {
    const uint32_t len = be32(bytes, at);
    EXPECT_LE(at + 12 + len, bytes.size()) << "chunk runs past the end";
    if (at + 12 + len > bytes.size()) return png;
    const std::string type = bytes.substr(at + 4, 4);
    const std::string data = bytes.substr(at + 8, len);
    const auto crc = crc32(0L, reinterpret_cast<const Bytef*>(bytes.data() + at + 4), 4 + len);
    EXPECT_EQ(be32(bytes, at + 8 + len), static_cast<uint32_t>(crc)) << "bad CRC in " << type;
    png.chunk_types.push_back(type);
    if (type == "IHDR") {
      EXPECT_EQ(len, 13u);
      png.width = be32(data, 0);
      png.height = be32(data, 4);
      EXPECT_EQ(data[8], 8);  // bit depth
      png.color_type = data[9];
      EXPECT_EQ(data[10], 0);
      EXPECT_EQ(data[11], 0);
      EXPECT_EQ(data[12], 0);  // no interlace
    } else if (type == "IDAT") {
      idat += data;
    }
    at += 12 + len;
  }
  EXPECT_EQ(at, bytes.size()) << "trailing bytes after the last chunk";
  EXPECT_FALSE(png.chunk_types.empty());
  if (png.chunk_types.empty()) return png;
  EXPECT_EQ(png.chunk_types.front(), "IHDR");
  EXPECT_EQ(png.chunk_types.back(), "IEND");
  EXPECT_TRUE(png.color_type == 0 || png.color_type == 2);
  const int64_t channels = png.color_type == 2 ? 3 : 1;
  const int64_t row = int64_t{png.width} * channels;
  uLongf raw_size = static_cast<uLongf>((row + 1) * png.height);
  std::string raw(raw_size, '\0');
  const int rc = uncompress(reinterpret_cast<Bytef*>(&raw[0]), &raw_size,
                            reinterpret_cast<const Bytef*>(idat.data()), idat.size());
  EXPECT_EQ(rc, Z_OK);
  EXPECT_EQ(raw_size, raw.size());
  if (rc != Z_OK || raw_size != raw.size()) return png;
  auto hwc = torch::empty({int64_t{png.height}, int64_t{png.width}, channels}, torch::kUInt8);
  auto* out = hwc.data_ptr<uint8_t>();
  for (int64_t y = 0; y < png.height; ++y) {
    EXPECT_EQ(raw[y * (row + 1)], 0) << "row " << y << " filter type";
    std::memcpy(out + y * row, raw.data() + y * (row + 1) + 1, row);
  }
  png.pixels = channels == 1 ? hwc.squeeze(-1) : hwc.permute({2, 0, 1}).contiguous();
  return png;
}

class ImageTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = nfk::test::temp_dir("image"); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  std::string dir_;
};

// A projector with only what plotting needs.
nfk::Projector fake_projector(int64_t k = 12) {
  nfk::Projector p;
  p.kind = nfk::ModelKind::kClassifier;
  p.model.dtype = torch::kFloat64;
  p.method = nfk::FitMethod::kPerExample;
  p.basis = torch::zeros({500, k}, torch::kFloat64);
  p.singular_values = torch::logspace(2, -2, k, 10, torch::kFloat64);
  p.total_variance = p.singular_values.square().sum().item<double>() * 1.25;
  p.total_variance_exact = true;
  p.n_examples = 1000;
  return p;
}

TEST_F(ImageTest, PngRoundTripGray) {
  nfk::test::seed(3);
  auto img = torch::randint(0, 256, {13, 7}, torch::kUInt8);
  img[0][0] = 0;
  img[12][6] = 255;
  nfk::write_png(path("gray.png"), img);
  auto png = decode_png(read_bytes(path("gray.png")));
  EXPECT_EQ(png.width, 7u);
  EXPECT_EQ(png.height, 13u);
  EXPECT_EQ(png.color_type, 0);
  ASSERT_TRUE(png.pixels.defined());
  EXPECT_TRUE(torch::equal(png.pixels, img));
  // [1, H, W] is gray as well.
  EXPECT_EQ(nfk::encode_png(img.unsqueeze(0)), read_bytes(path("gray.png")));
}

TEST_F(ImageTest, PngRoundTripRgb) {
  nfk::test::seed(4);
  auto img = torch::randint(0, 256, {3, 5, 9}, torch::kUInt8);
  nfk::write_png(path("rgb.png"), img);
  auto png = decode_png(read_bytes(path("rgb.png")));
  EXPECT_EQ(png.width, 9u);
  EXPECT_EQ(png.height, 5u);
  EXPECT_EQ(png.color_type, 2);
  ASSERT_TRUE(png.pixels.defined());
  EXPECT_TRUE(torch::equal(png.pixels, img));
  EXPECT_EQ(png.chunk_types, (std::vector<std::string>{"IHDR", "IDAT", "IEND"}));
  // Non-contiguous input gives the same file.
  auto strided = img.permute({1, 2, 0}).contiguous().permute({2, 0, 1});
  EXPECT_EQ(nfk::encode_png(strided), read_bytes(path("rgb.png")));
}

TEST_F(ImageTest, PngFromFloatClampsAndRounds) {
  auto img =
      torch::tensor({{0.0, 1.0, 0.5, -0.3}, {1.7, 0.2, 1.0 / 255, std::nan("")}}, torch::kFloat64);
  auto png = decode_png(nfk::encode_png(img));
  ASSERT_TRUE(png.pixels.defined());
  auto expect = torch::tensor({{0, 255, 128, 0}, {255, 51, 1, 0}}, torch::kUInt8);
  EXPECT_TRUE(torch::equal(png.pixels, expect)) << png.pixels;
  auto rgb = torch::rand({3, 4, 6}, torch::kFloat32);
  auto png_rgb = decode_png(nfk::encode_png(rgb));
  ASSERT_TRUE(png_rgb.pixels.defined());
  EXPECT_TRUE(torch::equal(png_rgb.pixels, rgb.mul(255).round().to(torch::kUInt8)));
}

TEST_F(ImageTest, PngRejectsBadInput) {
  EXPECT_THROW(nfk::encode_png(torch::zeros({2, 4, 4}, torch::kUInt8)), c10::Error);
  EXPECT_THROW(nfk::encode_png(torch::zeros({4}, torch::kUInt8)), c10::Error);
  EXPECT_THROW(nfk::encode_png(torch::zeros({4, 4}, torch::kInt32)), c10::Error);
  EXPECT_THROW(nfk::encode_png(torch::zeros({0, 4}, torch::kUInt8)), c10::Error);
}

TEST_F(ImageTest, PngUnwritablePathThrowsAndLeavesNoFile) {
  const std::string bad = path("missing_dir/out.png");
  try {
    nfk::write_png(bad, torch::zeros({4, 4}, torch::kUInt8));
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("nfk: cannot write " + bad), std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(bad));
  // A read-only folder (unless running as root, which can write anyway).
  if (::geteuid() != 0) {
    const std::string ro = path("ro");
    std::filesystem::create_directories(ro);
    ::chmod(ro.c_str(), 0555);
    EXPECT_THROW(nfk::write_png(ro + "/out.png", torch::zeros({4, 4}, torch::kUInt8)), c10::Error);
    EXPECT_TRUE(std::filesystem::is_empty(ro));
    ::chmod(ro.c_str(), 0755);
  }
}

TEST_F(ImageTest, ImageGridShapeAndPlacement) {
  const int64_t n = 5, h = 4, w = 3, cols = 2, pad = 2;
  auto images = torch::zeros({n, 3, h, w}, torch::kFloat32);
  images[3] = torch::arange(3 * h * w, torch::kFloat32).view({3, h, w}) / (3 * h * w);
  auto grid = nfk::image_grid(images, cols, pad, 0.375);
  ASSERT_EQ(grid.sizes(), (std::vector<int64_t>{3, 3 * (h + pad) + pad, 2 * (w + pad) + pad}));
  EXPECT_EQ(grid.scalar_type(), torch::kFloat32);
  // Image 3 is row 1, column 1.
  const int64_t y = pad + 1 * (h + pad), x = pad + 1 * (w + pad);
  EXPECT_TRUE(torch::equal(grid.slice(1, y, y + h).slice(2, x, x + w), images[3]));
  // Padding: the border, the gaps, and the empty sixth slot.
  EXPECT_TRUE((grid.slice(1, 0, pad) == 0.375).all().item<bool>());
  EXPECT_TRUE((grid.slice(2, 0, pad) == 0.375).all().item<bool>());
  EXPECT_TRUE((grid.slice(1, pad + h, 2 * pad + h) == 0.375).all().item<bool>());
  const int64_t y5 = pad + 2 * (h + pad), x5 = pad + 1 * (w + pad);
  EXPECT_TRUE((grid.slice(1, y5, y5 + h).slice(2, x5, x5 + w) == 0.375).all().item<bool>());
  // Pixels covered by images: total count of non-pad pixels matches (images are 0 but image 3).
  EXPECT_EQ((grid != 0.375).sum().item<int64_t>(), (images != 0.375).sum().item<int64_t>());

  // Gray, more columns than images, no padding: one row, images side by side.
  auto gray = torch::rand({2, 1, 3, 3}, torch::kFloat64);
  auto g2 = nfk::image_grid(gray, 8, 0);
  ASSERT_EQ(g2.sizes(), (std::vector<int64_t>{1, 3, 6}));
  EXPECT_TRUE(torch::equal(g2.slice(2, 3, 6), gray[1]));
  EXPECT_THROW(nfk::image_grid(torch::rand({2, 2, 3, 3}), 2), c10::Error);
  EXPECT_THROW(nfk::image_grid(torch::rand({2, 1, 3, 3}), 0), c10::Error);
}

TEST_F(ImageTest, HeatmapMinMaxColors) {
  auto m = torch::tensor({{3.0, -1.0}, {7.0, 5.0}}, torch::kFloat64);
  auto img = nfk::heatmap_image(m, 4);
  ASSERT_EQ(img.sizes(), (std::vector<int64_t>{3, 8, 8}));
  EXPECT_EQ(img.scalar_type(), torch::kFloat32);
  auto first = torch::tensor({68.f, 1.f, 84.f}) / 255;    // viridis(0)
  auto last = torch::tensor({253.f, 231.f, 37.f}) / 255;  // viridis(1)
  // The min (-1) is cell (0, 1), the max (7) cell (1, 0); every pixel of a cell is alike.
  for (int64_t dy = 0; dy < 4; ++dy) {
    for (int64_t dx = 0; dx < 4; ++dx) {
      EXPECT_LT(
          (img.index({torch::indexing::Slice(), dy, 4 + dx}) - first).abs().max().item<float>(),
          1e-6);
      EXPECT_LT(
          (img.index({torch::indexing::Slice(), 4 + dy, dx}) - last).abs().max().item<float>(),
          1e-6);
    }
  }
  EXPECT_GE(img.min().item<float>(), 0.f);
  EXPECT_LE(img.max().item<float>(), 1.f);
  // Mid value (3 = halfway) is viridis(0.5), a teal.
  auto mid = torch::tensor({38.f, 130.f, 142.f}) / 255;
  EXPECT_LT((img.index({torch::indexing::Slice(), 0, 0}) - mid).abs().max().item<float>(), 1e-6);
  // Constant matrix: all first color.
  auto flat = nfk::heatmap_image(torch::full({2, 3}, 4.0), 1);
  EXPECT_LT((flat - first.view({3, 1, 1})).abs().max().item<float>(), 1e-6);
}

TEST_F(ImageTest, CanvasDrawing) {
  using nfk::Canvas;
  const Canvas::Color white{255, 255, 255}, red{255, 0, 0};
  Canvas cv(40, 20);
  auto count_non_white = [](const Canvas& c) {
    return (c.to_tensor() != 255).any(0).sum().item<int64_t>();
  };
  cv.text(2, 2, " ", red);
  EXPECT_EQ(count_non_white(cv), 0);
  cv.text(2, 2, "A", red);
  const int64_t a_pixels = count_non_white(cv);
  EXPECT_GT(a_pixels, 10);
  // All of 'A' lies inside its 5×7 box at (2, 2); its top row is .###. .
  for (int64_t y = 0; y < 20; ++y) {
    for (int64_t x = 0; x < 40; ++x) {
      auto p = cv.pixel(x, y);
      const bool inside = x >= 2 && x < 7 && y >= 2 && y < 9;
      if (!inside) {
        EXPECT_EQ(p.r + p.g + p.b, 3 * 255) << x << "," << y;
      }
    }
  }
  EXPECT_EQ(cv.pixel(2, 2).g, 255);
  EXPECT_EQ(cv.pixel(3, 2).g, 0);
  // Scale 2 quadruples the ink; every printable glyph but ' ' has ink.
  Canvas big(40, 20);
  big.text(0, 0, "A", red, 2);
  EXPECT_EQ(count_non_white(big), 4 * a_pixels);
  for (int ch = 33; ch <= 126; ++ch) {
    const uint8_t* g = Canvas::glyph(static_cast<unsigned char>(ch));
    int ink = 0;
    for (int r = 0; r < 7; ++r) ink += g[r] != 0;
    EXPECT_GT(ink, 0) << "glyph " << static_cast<char>(ch);
  }
  EXPECT_EQ(Canvas::text_width("abc", 2), (3 * 6 - 1) * 2);
  // Vertical text occupies a 7-wide, text_width-tall box.
  Canvas vt(20, 40);
  vt.text(3, 4, "AB", red, 1, Canvas::TextDirection::kUp);
  auto ink = (vt.to_tensor() != 255).any(0);
  auto ys = ink.any(1).nonzero(), xs = ink.any(0).nonzero();
  EXPECT_GE(xs.min().item<int64_t>(), 3);
  EXPECT_LE(xs.max().item<int64_t>(), 9);
  EXPECT_GE(ys.min().item<int64_t>(), 4);
  EXPECT_LE(ys.max().item<int64_t>(), 4 + 10);

  // Lines: ends included, clipped, thickness 2 is thicker.
  Canvas ln(10, 10);
  ln.line(1, 1, 8, 5, red);
  EXPECT_EQ(ln.pixel(1, 1).g, 0);
  EXPECT_EQ(ln.pixel(8, 5).g, 0);
  EXPECT_EQ(count_non_white(ln), 8);  // one pixel per column for a shallow line
  Canvas thick(10, 10);
  thick.line(1, 1, 8, 5, red, 2);
  EXPECT_GT(count_non_white(thick), 8);
  ln.line(-50, 3, 50, 3, red);  // clipped, no crash
  ln.fill_rect(8, 8, 10, 10, red);
  EXPECT_EQ(ln.pixel(9, 9).g, 0);
  auto t = ln.to_tensor();
  EXPECT_EQ(t.sizes(), (std::vector<int64_t>{3, 10, 10}));
  EXPECT_EQ(t.scalar_type(), torch::kUInt8);
  (void)white;
}

TEST_F(ImageTest, SpectrumPlotPngAndSvg) {
  auto proj = fake_projector();
  const std::string png_path = path("spectrum.png");
  nfk::write_spectrum_plot(png_path, proj);
  const std::string bytes = read_bytes(png_path);
  ASSERT_GE(bytes.size(), 33u);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_EQ(bytes.substr(12, 4), "IHDR");
  EXPECT_EQ(be32(bytes, 16), 640u);
  EXPECT_EQ(be32(bytes, 20), 400u);
  auto png = decode_png(bytes);
  ASSERT_TRUE(png.pixels.defined());
  EXPECT_TRUE(torch::equal(png.pixels, nfk::spectrum_png_image(proj)));
  // It has bar blue and line orange in it.
  auto px = png.pixels.to(torch::kLong);
  auto has = [&](int r, int g, int b) {
    return ((px[0] == r) & (px[1] == g) & (px[2] == b)).any().item<bool>();
  };
  EXPECT_TRUE(has(76, 114, 176));
  EXPECT_TRUE(has(221, 85, 0));

  nfk::write_spectrum_plot(path("spectrum.SVG"), proj);
  EXPECT_EQ(read_bytes(path("spectrum.SVG")), nfk::spectrum_svg(proj));

  try {
    nfk::write_spectrum_plot(path("spectrum.jpg"), proj);
    FAIL() << "expected an error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("nfk: plot " + path("spectrum.jpg") +
                                         ": use a .svg or .png file name"),
              std::string::npos)
        << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(path("spectrum.jpg")));
  EXPECT_THROW(nfk::write_spectrum_plot(path("nope/spectrum.png"), proj), c10::Error);
  EXPECT_FALSE(std::filesystem::exists(path("nope")));

  // Degenerate spectra still render: one component, and zero / tiny eigenvalues.
  auto one = fake_projector(1);
  EXPECT_EQ(nfk::spectrum_png_image(one).sizes(), (std::vector<int64_t>{3, 400, 640}));
  auto many = fake_projector(300);
  many.singular_values[299] = 0.0;
  many.total_variance_exact = false;
  EXPECT_EQ(nfk::spectrum_png_image(many).sizes(), (std::vector<int64_t>{3, 400, 640}));
  nfk::Projector empty;
  EXPECT_THROW(nfk::spectrum_png_image(empty), c10::Error);
}

}  // namespace

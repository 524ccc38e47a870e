#pragma once
/// nfk raster pictures without an imaging dependency: PNG output (zlib only), image grids,
/// heatmaps, and a tiny RGB canvas with lines, rectangles and a built-in 5×7 bitmap font.

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace nfk {

/// Writes `image` to `path` atomically as an 8-bit PNG (no interlace, filter 0 rows).
/// Layouts: [H, W] or [1, H, W] → grayscale; [3, H, W] (channels first) → RGB.
/// Dtypes: uint8 as is, or any floating type in [0, 1] (clamped, NaN → 0, scaled by 255 and
/// rounded). Throws "nfk: ..." on a bad shape/dtype or when the file cannot be written (then no
/// file is left behind).
/// Example: `nfk::write_png("grid.png", nfk::image_grid(x, 8));`
void write_png(const std::string& path, const torch::Tensor& image);

/// The PNG file bytes `write_png` would write for `image` (same layouts and dtypes).
std::string encode_png(const torch::Tensor& image);

/// Tiles `images` [N, C, H, W] (floating, values in [0, 1], C = 1 or 3) into one picture
/// [C, H', W'] of the same dtype, like torchvision's make_grid: min(columns, N) images per row,
/// ceil(N / columns) rows, `padding` pixels of `pad_value` around and between the images, so
/// H' = rows·(H + padding) + padding, W' = cols·(W + padding) + padding, and image i has its
/// top-left pixel at (padding + (i / cols)·(H + padding), padding + (i % cols)·(W + padding)).
torch::Tensor image_grid(const torch::Tensor& images, int64_t columns, int64_t padding = 2,
                         double pad_value = 1.0);

/// Nearest neighbours as a picture: row i shows query_images[i], then train_images at
/// neighbors[i][0..k) (nearest first), for the first `rows` queries. Images [*, C, H, W] in [0, 1].
torch::Tensor neighbor_grid(const torch::Tensor& query_images, const torch::Tensor& train_images,
                            const torch::Tensor& neighbors, int64_t rows);

/// A matrix [R, C] (any real dtype) as an RGB picture float32 [3, R·cell_pixels, C·cell_pixels]
/// in [0, 1]: each entry is a `cell_pixels`-wide square colored by a viridis colormap, linearly
/// normalised from the finite minimum (dark purple) to the finite maximum (yellow). A constant
/// matrix is all the first color; non-finite entries are mid-gray.
torch::Tensor heatmap_image(const torch::Tensor& matrix, int64_t cell_pixels);

/// A tiny RGB raster for drawing charts: pixel (x, y) has x to the right and y downwards from
/// the top-left corner. Every drawing call clips to the canvas, so anything may be drawn partly
/// or wholly outside it.
class Canvas {
 public:
  struct Color {
    uint8_t r = 0, g = 0, b = 0;
  };
  /// How text runs: left to right, bottom to top (rotated 90° anticlockwise, as a left y-axis
  /// label), or top to bottom (rotated 90° clockwise, as a right y-axis label).
  enum class TextDirection { kHorizontal, kUp, kDown };

  static constexpr int kGlyphWidth = 5;  // font cell, before scaling
  static constexpr int kGlyphHeight = 7;
  static constexpr int kGlyphAdvance = 6;  // glyph width + 1 pixel of spacing

  /// A `width` × `height` canvas (both > 0) filled with `background`.
  Canvas(int64_t width, int64_t height, Color background = {255, 255, 255});

  int64_t width() const { return width_; }
  int64_t height() const { return height_; }

  /// Sets one pixel (ignored outside the canvas).
  void set_pixel(int64_t x, int64_t y, Color color);
  /// The color at (x, y), which must be inside the canvas.
  Color pixel(int64_t x, int64_t y) const;

  /// Fills the `w` × `h` rectangle whose top-left pixel is (x, y); nothing if w or h ≤ 0.
  void fill_rect(int64_t x, int64_t y, int64_t w, int64_t h, Color color);
  /// Outlines the same rectangle with a 1-pixel border.
  void stroke_rect(int64_t x, int64_t y, int64_t w, int64_t h, Color color);

  /// A Bresenham line from (x0, y0) to (x1, y1), both ends included; `thickness` (≥ 1) pixels
  /// wide, drawn as a thickness × thickness square at every step.
  void line(int64_t x0, int64_t y0, int64_t x1, int64_t y1, Color color, int thickness = 1);

  /// Draws `text` in the built-in 5×7 font (ASCII 32..126; any other byte draws as '?'), each
  /// font pixel a `scale` × `scale` square. (x, y) is the top-left corner of the text's bounding
  /// box, which is text_width(text, scale) long along the text and text_height(scale) across it.
  /// `bold` also draws the text one pixel to the right (along the text).
  void text(int64_t x, int64_t y, const std::string& text, Color color, int scale = 1,
            TextDirection direction = TextDirection::kHorizontal, bool bold = false);

  /// Length along the text of `text` drawn at `scale`: (6·n − 1)·scale for n > 0 bytes, 0 if
  /// empty.
  static int64_t text_width(const std::string& text, int scale = 1);
  /// Size across the text: 7·scale.
  static int64_t text_height(int scale = 1) { return int64_t{kGlyphHeight} * scale; }

  /// The 7 rows of the glyph for byte `c` (bit 4 = leftmost column); '?' outside 32..126.
  static const uint8_t* glyph(unsigned char c);

  /// The canvas as uint8 [3, H, W] (a copy), ready for write_png.
  torch::Tensor to_tensor() const;

 private:
  int64_t width_, height_;
  std::vector<uint8_t> rgb_;  // planar: [3, H, W]
};

}  // namespace nfk

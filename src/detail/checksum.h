#pragma once
// CRC-32 (zlib's) of a byte range of any length: file formats check their bytes with it.
#include <zlib.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace nfk::detail {

inline uint32_t crc32_of(const char* data, size_t n) {
  uLong crc = ::crc32(0L, Z_NULL, 0);
  while (n > 0) {  // zlib takes 32-bit lengths
    const uInt chunk = static_cast<uInt>(std::min<size_t>(n, std::numeric_limits<uInt>::max()));
    crc = ::crc32(crc, reinterpret_cast<const Bytef*>(data), chunk);
    data += chunk;
    n -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

}  // namespace nfk::detail

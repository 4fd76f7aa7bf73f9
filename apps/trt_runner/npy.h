// Minimal .npy reader and writer (NumPy format 1.0-3.0, little-endian, C order) for the C++ runner:
// the inputs come from `remamber-deploy prepare-inputs`, the logits go back to
// `remamber-deploy compare --runtime-logits`. Fortran order, big-endian data and object arrays are
// refused with a message naming the file and the fix.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace remamber {
namespace npy {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Array {
  std::string descr;            // NumPy dtype string, e.g. "<f4", "<i8", "|b1"
  std::vector<int64_t> shape;   // () for a 0-d array
  std::vector<uint8_t> data;    // C-order bytes

  int64_t size() const;         // number of elements
  size_t itemsize() const;      // bytes per element (from descr)
};

// Bytes per element of a supported descr ("<f4", "<f2", "<f8", "<i8", "<i4", "<i2", "|i1", "|u1", "|b1"),
// or 0 when unsupported.
size_t itemsize_of(std::string const& descr);

Array parse(std::vector<uint8_t> const& bytes, std::string const& what);  // throws Error
std::vector<uint8_t> serialize(Array const& array);                        // format 1.0 (2.0 if the header is long)

Array load(std::string const& path);                       // throws Error
void save(std::string const& path, Array const& array);   // writes path.tmp, then renames; throws Error

}  // namespace npy
}  // namespace remamber

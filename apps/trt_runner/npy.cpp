// .npy reader/writer (see npy.h). The header is a Python dict literal; only the three keys NumPy
// writes are read: 'descr', 'fortran_order', 'shape'.
#include "npy.h"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>

namespace remamber {
namespace npy {
namespace {

constexpr char kMagic[] = "\x93NUMPY";

std::string header_value(std::string const& header, std::string const& key, std::string const& what) {
  const std::string quoted = "'" + key + "'";
  size_t pos = header.find(quoted);
  if (pos == std::string::npos) throw Error(what + ": .npy header has no '" + key + "'");
  pos = header.find(':', pos + quoted.size());
  if (pos == std::string::npos) throw Error(what + ": malformed .npy header");
  ++pos;
  while (pos < header.size() && header[pos] == ' ') ++pos;
  size_t end = pos;
  if (header[pos] == '(') {
    end = header.find(')', pos);
    if (end == std::string::npos) throw Error(what + ": malformed shape in the .npy header");
    return header.substr(pos, end - pos + 1);
  }
  if (header[pos] == '\'') {
    end = header.find('\'', pos + 1);
    if (end == std::string::npos) throw Error(what + ": malformed descr in the .npy header");
    return header.substr(pos + 1, end - pos - 1);
  }
  while (end < header.size() && header[end] != ',' && header[end] != '}') ++end;
  return header.substr(pos, end - pos);
}

std::vector<int64_t> parse_shape(std::string const& tuple, std::string const& what) {
  std::vector<int64_t> shape;
  std::string inner = tuple.substr(1, tuple.size() - 2);
  std::stringstream ss(inner);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t b = item.find_first_not_of(" \t\n");
    if (b == std::string::npos) continue;  // trailing comma of a 1-tuple
    size_t e = item.find_last_not_of(" \t\nL");
    const std::string digits = item.substr(b, e - b + 1);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos)
      throw Error(what + ": bad dimension '" + digits + "' in the .npy shape " + tuple);
    shape.push_back(std::stoll(digits));
  }
  return shape;
}

}  // namespace

size_t itemsize_of(std::string const& d) {
  if (d == "<f4" || d == "<i4" || d == "<u4") return 4;
  if (d == "<f8" || d == "<i8" || d == "<u8") return 8;
  if (d == "<f2" || d == "<i2" || d == "<u2") return 2;
  if (d == "|i1" || d == "|u1" || d == "|b1") return 1;
  return 0;
}

int64_t Array::size() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

size_t Array::itemsize() const { return itemsize_of(descr); }

Array parse(std::vector<uint8_t> const& bytes, std::string const& what) {
  if (bytes.size() < 10 || std::memcmp(bytes.data(), kMagic, 6) != 0)
    throw Error(what + ": not a .npy file (no \\x93NUMPY magic); write it with numpy.save");
  const int major = bytes[6];
  size_t header_len = 0, offset = 0;
  if (major == 1) {
    header_len = bytes[8] | (static_cast<size_t>(bytes[9]) << 8);
    offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw Error(what + ": truncated .npy header");
    header_len = bytes[8] | (static_cast<size_t>(bytes[9]) << 8) | (static_cast<size_t>(bytes[10]) << 16) |
                 (static_cast<size_t>(bytes[11]) << 24);
    offset = 12;
  } else {
    throw Error(what + ": .npy format version " + std::to_string(major) + " is not supported (1, 2, 3 are)");
  }
  if (offset + header_len > bytes.size()) throw Error(what + ": truncated .npy header");
  const std::string header(reinterpret_cast<char const*>(bytes.data() + offset), header_len);
  Array a;
  a.descr = header_value(header, "descr", what);
  if (header_value(header, "fortran_order", what).find("True") != std::string::npos)
    throw Error(what + ": Fortran-order array; save a C-order copy (numpy.ascontiguousarray)");
  if (itemsize_of(a.descr) == 0)
    throw Error(what + ": dtype '" + a.descr + "' is not supported (little-endian float16/32/64, int8..64, bool)");
  a.shape = parse_shape(header_value(header, "shape", what), what);
  const size_t nbytes = static_cast<size_t>(a.size()) * a.itemsize();
  const size_t start = offset + header_len;
  if (bytes.size() - start != nbytes)
    throw Error(what + ": holds " + std::to_string(bytes.size() - start) + " data bytes, its header says " +
                std::to_string(nbytes));
  a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(start), bytes.end());
  return a;
}

std::vector<uint8_t> serialize(Array const& a) {
  if (a.itemsize() == 0) throw Error("cannot write dtype '" + a.descr + "' as .npy");
  if (a.data.size() != static_cast<size_t>(a.size()) * a.itemsize()) throw Error("array data does not match its shape");
  std::string shape = "(";
  for (size_t i = 0; i < a.shape.size(); ++i) shape += std::to_string(a.shape[i]) + (a.shape.size() == 1 ? "," : (i + 1 < a.shape.size() ? ", " : ""));
  shape += ")";
  std::string header = "{'descr': '" + a.descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  const bool v2 = header.size() + 11 > 65535;
  const size_t prefix = v2 ? 12 : 10;
  const size_t total = ((prefix + header.size() + 1 + 63) / 64) * 64;  // data starts 64-byte aligned
  header.append(total - prefix - header.size() - 1, ' ');
  header.push_back('\n');
  std::vector<uint8_t> out(kMagic, kMagic + 6);
  out.push_back(v2 ? 2 : 1);
  out.push_back(0);
  const size_t n = header.size();
  out.push_back(static_cast<uint8_t>(n & 0xff));
  out.push_back(static_cast<uint8_t>((n >> 8) & 0xff));
  if (v2) {
    out.push_back(static_cast<uint8_t>((n >> 16) & 0xff));
    out.push_back(static_cast<uint8_t>((n >> 24) & 0xff));
  }
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), a.data.begin(), a.data.end());
  return out;
}

Array load(std::string const& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open (missing? write it with `remamber-deploy prepare-inputs`)");
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return parse(bytes, path);
}

void save(std::string const& path, Array const& array) {
  const std::vector<uint8_t> bytes = serialize(array);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw Error(path + ": cannot write (check the folder exists and is writable)");
    f.write(reinterpret_cast<char const*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    if (!f) {
      std::remove(tmp.c_str());
      throw Error(path + ": write failed (disk full?)");
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    throw Error(path + ": could not rename the finished file into place");
  }
}

}  // namespace npy
}  // namespace remamber

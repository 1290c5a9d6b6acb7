// storage/qcow2/compress.h — compressed cluster codecs: raw deflate (zlib)
// and zstd, as the qcow2 spec's compression_type names them.
#pragma once

#include "storage/qcow2/format.h"

#include <optional>

namespace emu::storage::qcow2 {

// Decompresses `in` (which may carry trailing sector padding) into exactly
// out.size() bytes.
Result<void> decompress_cluster(CompressionType type, std::span<const uint8_t> in, std::span<uint8_t> out);

// Compressed form of `in`, or nullopt when it would not be smaller than
// in.size() (the cluster is then stored uncompressed).
std::optional<std::vector<uint8_t>> compress_cluster(CompressionType type, std::span<const uint8_t> in);

} // namespace emu::storage::qcow2

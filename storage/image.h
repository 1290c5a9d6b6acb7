// storage/image.h — opening and creating images: format probing (and clear
// refusal of the formats not supported yet), protocol + format driver
// stacking, backing chains (relative names resolved against the image's
// directory, backing_fmt, loop and depth checks).
#pragma once

#include "storage/block_driver.h"
#include "storage/file.h"
#include "storage/qcow2/qcow2.h"

#include <functional>
#include <memory>

namespace emu::storage {

enum class CacheMode { Writeback, None, Writethrough, Directsync, Unsafe };

Result<CacheMode> parse_cache_mode(std::string_view text);
std::string_view cache_mode_name(CacheMode mode);
inline bool cache_direct(CacheMode m)
{
    return m == CacheMode::None || m == CacheMode::Directsync;
}
inline bool cache_writethrough(CacheMode m)
{
    return m == CacheMode::Writethrough || m == CacheMode::Directsync;
}

struct ImageOptions {
    std::string filename;
    std::string format;  // "" probes
    bool read_only = false;
    bool force_share = false;
    CacheMode cache = CacheMode::Writeback;
    bool open_backing = true;
    size_t l2_cache_bytes = 0;
    size_t refcount_cache_bytes = 0;
    // Backing images are opened read-only, except one for which this returns
    // true (given its resolved file name): the base a commit writes into.
    std::function<bool(const std::string& filename)> writable_backing;
};

// The formats this build reads and writes.
bool format_supported(std::string_view format);
// Formats recognised only to be refused with a clear error.
bool format_known(std::string_view format);

// Names the format of an open protocol driver from its first bytes.
Result<std::string> probe_format(BlockDriver& file);

// Opens the image and (unless open_backing is false) its whole backing chain.
Result<std::unique_ptr<BlockDriver>> open_image(const ImageOptions& options);

// A format driver over an open protocol driver (blockdev-add naming a file
// node): `format` "" probes. The backing chain is not opened.
Result<std::unique_ptr<BlockDriver>> open_format(std::unique_ptr<BlockDriver> file, const std::string& format,
                                                 bool read_only);

// The backing file name as QEMU resolves it: absolute names as they are,
// relative ones against the directory of the image that names them.
std::string resolve_backing_path(const std::string& image, const std::string& backing);

Result<void> create_raw(const std::string& path, uint64_t size, Preallocation prealloc);
Result<void> create_qcow2(const std::string& path, const qcow2::CreateOptions& options);

} // namespace emu::storage

// storage/block_driver.cpp — defaults shared by every driver.
#include "storage/block_driver.h"

#include <algorithm>
#include <cstring>

namespace emu::storage {

uint64_t BlockDriver::allocated_bytes() const
{
    return 0;
}

ImageInfo BlockDriver::info() const
{
    ImageInfo info;
    info.format = std::string(format_name());
    info.virtual_size = size();
    return info;
}

Result<void> read_clamped(BlockDriver& drv, uint64_t offset, std::span<uint8_t> buf)
{
    uint64_t size = drv.size();
    size_t inside = offset >= size ? 0 : size_t(std::min<uint64_t>(buf.size(), size - offset));
    if (inside > 0) {
        if (auto r = drv.read(offset, buf.first(inside)); !r)
            return r;
    }
    if (inside < buf.size())
        std::memset(buf.data() + inside, 0, buf.size() - inside);
    return {};
}

} // namespace emu::storage

// storage/commit.cpp — committing into a backing image.
#include "storage/commit.h"

#include <algorithm>
#include <fmt/format.h>
#include <sys/stat.h>

namespace emu::storage {

CommitCopier::CommitCopier(BlockDriver& top, BlockDriver& base, uint64_t chunk)
    : m_top(top), m_base(base), m_buf(size_t(chunk))
{}

Result<void> CommitCopier::prepare()
{
    if (m_base.size() >= m_top.size())
        return {};
    if (auto r = m_base.resize(m_top.size(), Preallocation::Off); !r)
        return chain(fmt::format("Could not resize the base image '{}'", m_base.filename()), r.error());
    return {};
}

Result<bool> CommitCopier::above_base(uint64_t offset, uint64_t* len, bool* zero)
{
    for (BlockDriver* d = &m_top; d && d->underlying() != m_base.underlying(); d = d->backing()) {
        if (offset >= d->size()) {
            // Past a shorter layer: it reads as zeroes, decided here.
            *zero = true;
            return true;
        }
        auto st = d->block_status(offset, *len);
        if (!st)
            return std::unexpected(st.error());
        if (st->length && st->length < *len)
            *len = st->length;
        if (st->allocated) {
            *zero = st->zero && !st->data;
            return true;
        }
    }
    return false;
}

Result<CommitRun> CommitCopier::step(uint64_t offset)
{
    CommitRun run;
    const uint64_t size = m_top.size();
    if (offset >= size)
        return run;
    uint64_t n = std::min<uint64_t>(m_buf.size(), size - offset);
    bool zero = false;
    auto above = above_base(offset, &n, &zero);
    if (!above)
        return chain(fmt::format("error while reading block status at offset {}", offset), above.error());
    run.length = n;
    if (!*above)
        return run;
    Result<void> r;
    if (zero) {
        r = m_base.write_zeroes(offset, n, false);
    } else {
        if (auto rd = m_top.read(offset, std::span<uint8_t>(m_buf.data(), n)); !rd)
            return chain(fmt::format("error while reading at byte {}", offset), rd.error());
        r = m_base.write(offset, std::span<const uint8_t>(m_buf.data(), n));
    }
    if (!r)
        return chain(fmt::format("error while writing to '{}' at byte {}", m_base.filename(), offset), r.error());
    run.copied = true;
    return run;
}

Result<void> CommitCopier::copy(uint64_t offset, uint64_t len)
{
    const uint64_t size = m_top.size();
    const uint64_t end = std::min(size, offset + len);
    for (uint64_t pos = offset; pos < end;) {
        uint64_t n = std::min<uint64_t>(m_buf.size(), end - pos);
        std::span<uint8_t> buf(m_buf.data(), n);
        if (auto rd = m_top.read(pos, buf); !rd)
            return chain(fmt::format("error while reading at byte {}", pos), rd.error());
        Result<void> r = buffer_is_zero(buf) ? m_base.write_zeroes(pos, n, false) : m_base.write(pos, buf);
        if (!r)
            return chain(fmt::format("error while writing to '{}' at byte {}", m_base.filename(), pos), r.error());
        pos += n;
    }
    return {};
}

bool same_file(const std::string& a, const std::string& b)
{
    struct stat sa {
    }, sb{};
    return stat(a.c_str(), &sa) == 0 && stat(b.c_str(), &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

BlockDriver* find_backing_image(BlockDriver& top, const std::string& name)
{
    for (BlockDriver* d = &top; d->backing(); d = d->backing()) {
        BlockDriver* b = d->backing();
        const std::string named = d->info().backing_filename;
        if (b->filename() == name || (!named.empty() && named == name) || same_file(name, b->filename()))
            return b;
    }
    return nullptr;
}

BlockDriver* chain_bottom(BlockDriver& top)
{
    BlockDriver* d = &top;
    while (d->backing())
        d = d->backing();
    return d;
}

BlockDriver* overlay_of(BlockDriver& top, BlockDriver& image)
{
    for (BlockDriver* d = &top; d; d = d->backing())
        if (d->backing() && d->backing()->underlying() == image.underlying())
            return d;
    return nullptr;
}

Result<std::unique_ptr<BlockDriver>> unlink_layers(BlockDriver& overlay, BlockDriver& base)
{
    BlockDriver* first = overlay.backing();
    if (!first || first->underlying() == base.underlying())
        return fail(fmt::format("'{}' has no layers above '{}' to remove", overlay.filename(), base.filename()),
                    EINVAL);
    BlockDriver* above_base = overlay_of(*first, base);
    if (!above_base)
        return fail(fmt::format("'{}' is not below '{}'", base.filename(), overlay.filename()), EINVAL);
    std::unique_ptr<BlockDriver> removed = overlay.take_backing();
    std::unique_ptr<BlockDriver> kept = above_base->take_backing();
    if (auto r = overlay.attach_backing(std::move(kept)); !r)
        return std::unexpected(r.error());
    return removed;
}

Result<std::unique_ptr<BlockDriver>> make_root(std::unique_ptr<BlockDriver>& root, BlockDriver& base)
{
    BlockDriver* above_base = overlay_of(*root, base);
    if (!above_base)
        return fail(fmt::format("'{}' is not below '{}'", base.filename(), root->filename()), EINVAL);
    std::unique_ptr<BlockDriver> kept = above_base->take_backing();
    std::unique_ptr<BlockDriver> old = std::move(root);
    root = std::move(kept);
    return old;
}

} // namespace emu::storage

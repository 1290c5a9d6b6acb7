// storage/qcow2/compress.cpp — zlib (raw deflate) and zstd cluster codecs.
#include "storage/qcow2/compress.h"

#include <zlib.h>
#include <zstd.h>

namespace emu::storage::qcow2 {

namespace {

Result<void> inflate_raw(std::span<const uint8_t> in, std::span<uint8_t> out)
{
    z_stream zs{};
    if (inflateInit2(&zs, -15) != Z_OK)
        return fail("qcow2: cannot initialize zlib");
    zs.next_in = const_cast<Bytef*>(in.data());
    zs.avail_in = uInt(in.size());
    zs.next_out = out.data();
    zs.avail_out = uInt(out.size());
    int rc = inflate(&zs, Z_FINISH);
    bool full = zs.avail_out == 0;
    inflateEnd(&zs);
    // Trailing padding after the deflate stream is normal (Z_STREAM_END); a
    // stream that fills the cluster without ending is accepted too, as QEMU does.
    if ((rc == Z_STREAM_END || rc == Z_OK || rc == Z_BUF_ERROR) && full)
        return {};
    return fail("qcow2: compressed cluster is corrupt (zlib stream does not decode to a full cluster)");
}

Result<void> zstd_decode(std::span<const uint8_t> in, std::span<uint8_t> out)
{
    ZSTD_DCtx* ctx = ZSTD_createDCtx();
    if (!ctx)
        return fail("qcow2: cannot initialize zstd");
    ZSTD_inBuffer ib{in.data(), in.size(), 0};
    ZSTD_outBuffer ob{out.data(), out.size(), 0};
    size_t rc = 0;
    while (ob.pos < ob.size) {
        size_t before_in = ib.pos, before_out = ob.pos;
        rc = ZSTD_decompressStream(ctx, &ob, &ib);
        if (ZSTD_isError(rc))
            break;
        if (ib.pos == before_in && ob.pos == before_out)
            break; // no progress: input exhausted
    }
    ZSTD_freeDCtx(ctx);
    if (ZSTD_isError(rc))
        return fail(std::string("qcow2: compressed cluster is corrupt (zstd: ") + ZSTD_getErrorName(rc) + ")");
    if (ob.pos != ob.size)
        return fail("qcow2: compressed cluster is corrupt (zstd stream does not decode to a full cluster)");
    return {};
}

} // namespace

Result<void> decompress_cluster(CompressionType type, std::span<const uint8_t> in, std::span<uint8_t> out)
{
    if (type == CompressionType::Zstd)
        return zstd_decode(in, out);
    return inflate_raw(in, out);
}

std::optional<std::vector<uint8_t>> compress_cluster(CompressionType type, std::span<const uint8_t> in)
{
    std::vector<uint8_t> out(in.size());
    if (type == CompressionType::Zstd) {
        size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), ZSTD_CLEVEL_DEFAULT);
        if (ZSTD_isError(n) || n >= in.size())
            return std::nullopt;
        out.resize(n);
        return out;
    }
    z_stream zs{};
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -12, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        return std::nullopt;
    zs.next_in = const_cast<Bytef*>(in.data());
    zs.avail_in = uInt(in.size());
    zs.next_out = out.data();
    zs.avail_out = uInt(out.size());
    int rc = deflate(&zs, Z_FINISH);
    size_t n = out.size() - zs.avail_out;
    deflateEnd(&zs);
    if (rc != Z_STREAM_END || n >= in.size())
        return std::nullopt;
    out.resize(n);
    return out;
}

} // namespace emu::storage::qcow2

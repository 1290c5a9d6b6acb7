// storage/nbd/codec.cpp — the NBD wire codec.
#include "storage/nbd/codec.h"

#include "storage/endian.h"

#include <cstring>
#include <fmt/format.h>

namespace emu::storage::nbd {

// --- ByteReader / ByteWriter -------------------------------------------------

bool ByteReader::take(size_t n)
{
    if (m_failed || m_data.size() - m_pos < n) {
        m_failed = true;
        return false;
    }
    return true;
}

uint8_t ByteReader::u8()
{
    if (!take(1))
        return 0;
    return m_data[m_pos++];
}

uint16_t ByteReader::u16()
{
    if (!take(2))
        return 0;
    uint16_t v = load_be16(m_data.data() + m_pos);
    m_pos += 2;
    return v;
}

uint32_t ByteReader::u32()
{
    if (!take(4))
        return 0;
    uint32_t v = load_be32(m_data.data() + m_pos);
    m_pos += 4;
    return v;
}

uint64_t ByteReader::u64()
{
    if (!take(8))
        return 0;
    uint64_t v = load_be64(m_data.data() + m_pos);
    m_pos += 8;
    return v;
}

std::string ByteReader::str(size_t n)
{
    auto b = bytes(n);
    return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

std::span<const uint8_t> ByteReader::bytes(size_t n)
{
    if (!take(n))
        return {};
    auto b = m_data.subspan(m_pos, n);
    m_pos += n;
    return b;
}

ByteWriter& ByteWriter::u16(uint16_t v)
{
    uint8_t b[2];
    store_be16(b, v);
    m_data.insert(m_data.end(), b, b + 2);
    return *this;
}

ByteWriter& ByteWriter::u32(uint32_t v)
{
    uint8_t b[4];
    store_be32(b, v);
    m_data.insert(m_data.end(), b, b + 4);
    return *this;
}

ByteWriter& ByteWriter::u64(uint64_t v)
{
    uint8_t b[8];
    store_be64(b, v);
    m_data.insert(m_data.end(), b, b + 8);
    return *this;
}

ByteWriter& ByteWriter::bytes(std::span<const uint8_t> b)
{
    m_data.insert(m_data.end(), b.begin(), b.end());
    return *this;
}

ByteWriter& ByteWriter::str(std::string_view s)
{
    m_data.insert(m_data.end(), s.begin(), s.end());
    return *this;
}

bool valid_string(std::string_view s)
{
    return s.size() <= k_max_string && s.find('\0') == std::string_view::npos;
}

// --- handshake ---------------------------------------------------------------

std::array<uint8_t, k_greeting_size> encode_greeting(uint16_t handshake_flags)
{
    std::array<uint8_t, k_greeting_size> b{};
    store_be64(b.data(), k_init_magic);
    store_be64(b.data() + 8, k_option_magic);
    store_be16(b.data() + 16, handshake_flags);
    return b;
}

Result<uint16_t> decode_greeting(std::span<const uint8_t, k_greeting_size> bytes)
{
    if (load_be64(bytes.data()) != k_init_magic)
        return fail("not an NBD server (bad greeting magic)", EPROTO);
    uint64_t second = load_be64(bytes.data() + 8);
    if (second == 0x00420281861253ull)
        return fail("the server uses the oldstyle handshake, which is not supported", EPROTO);
    if (second != k_option_magic)
        return fail("bad newstyle handshake magic", EPROTO);
    return load_be16(bytes.data() + 16);
}

std::array<uint8_t, k_option_header_size> encode_option_header(uint32_t option, uint32_t length)
{
    std::array<uint8_t, k_option_header_size> b{};
    store_be64(b.data(), k_option_magic);
    store_be32(b.data() + 8, option);
    store_be32(b.data() + 12, length);
    return b;
}

Result<OptionHeader> decode_option_header(std::span<const uint8_t, k_option_header_size> bytes)
{
    if (load_be64(bytes.data()) != k_option_magic)
        return fail("bad option magic", EPROTO);
    return OptionHeader{load_be32(bytes.data() + 8), load_be32(bytes.data() + 12)};
}

std::vector<uint8_t> encode_option_reply(uint32_t option, Rep type, std::span<const uint8_t> payload)
{
    ByteWriter w;
    w.u64(k_option_reply_magic).u32(option).u32(uint32_t(type)).u32(uint32_t(payload.size())).bytes(payload);
    return w.take();
}

Result<OptionReplyHeader> decode_option_reply_header(std::span<const uint8_t, k_option_reply_header_size> bytes)
{
    if (load_be64(bytes.data()) != k_option_reply_magic)
        return fail("bad option reply magic", EPROTO);
    return OptionReplyHeader{load_be32(bytes.data() + 8), load_be32(bytes.data() + 12), load_be32(bytes.data() + 16)};
}

Result<InfoRequest> parse_info_request(std::span<const uint8_t> payload)
{
    ByteReader r(payload);
    uint32_t name_len = r.u32();
    if (!r.ok() || name_len > k_max_string || name_len > r.remaining())
        return fail(fmt::format("export name length {} is invalid", name_len), EINVAL);
    InfoRequest req;
    req.name = r.str(name_len);
    uint16_t count = r.u16();
    if (!r.ok() || size_t(count) * 2 != r.remaining())
        return fail(fmt::format("information request count {} does not match the option length", count), EINVAL);
    req.requests.reserve(count);
    for (uint16_t i = 0; i < count; i++)
        req.requests.push_back(r.u16());
    if (!valid_string(req.name))
        return fail("export name contains a NUL byte", EINVAL);
    return req;
}

std::vector<uint8_t> encode_info_request(std::string_view name, std::span<const uint16_t> requests)
{
    ByteWriter w;
    w.u32(uint32_t(name.size())).str(name).u16(uint16_t(requests.size()));
    for (uint16_t t : requests)
        w.u16(t);
    return w.take();
}

Result<MetaContextRequest> parse_meta_context_request(std::span<const uint8_t> payload)
{
    ByteReader r(payload);
    uint32_t name_len = r.u32();
    if (!r.ok() || name_len > k_max_string || name_len > r.remaining())
        return fail(fmt::format("export name length {} is invalid", name_len), EINVAL);
    MetaContextRequest req;
    req.name = r.str(name_len);
    if (!valid_string(req.name))
        return fail("export name contains a NUL byte", EINVAL);
    uint32_t count = r.u32();
    if (!r.ok())
        return fail("the query count is missing", EINVAL);
    // Each query takes at least its 4-byte length: a count the payload cannot
    // hold is refused before anything is reserved.
    if (count > r.remaining() / 4)
        return fail(fmt::format("query count {} does not fit the option length", count), EINVAL);
    if (count > k_max_meta_queries)
        return fail(fmt::format("too many queries ({}, at most {})", count, k_max_meta_queries), E2BIG);
    for (uint32_t i = 0; i < count; i++) {
        uint32_t len = r.u32();
        if (!r.ok() || len > k_max_string || len > r.remaining())
            return fail(fmt::format("query {} length {} is invalid", i, len), EINVAL);
        std::string q = r.str(len);
        if (!valid_string(q))
            return fail(fmt::format("query {} contains a NUL byte", i), EINVAL);
        req.queries.push_back(std::move(q));
    }
    if (!r.at_end())
        return fail(fmt::format("{} bytes follow the last query", r.remaining()), EINVAL);
    return req;
}

std::vector<uint8_t> encode_meta_context_request(std::string_view name, std::span<const std::string> queries)
{
    ByteWriter w;
    w.u32(uint32_t(name.size())).str(name).u32(uint32_t(queries.size()));
    for (const auto& q : queries)
        w.u32(uint32_t(q.size())).str(q);
    return w.take();
}

std::vector<uint8_t> encode_info_export(uint64_t size, uint16_t flags)
{
    ByteWriter w;
    w.u16(uint16_t(InfoType::Export)).u64(size).u16(flags);
    return w.take();
}

std::vector<uint8_t> encode_info_string(InfoType type, std::string_view text)
{
    ByteWriter w;
    w.u16(uint16_t(type)).str(text.substr(0, k_max_string));
    return w.take();
}

std::vector<uint8_t> encode_info_block_size(uint32_t minimum, uint32_t preferred, uint32_t maximum)
{
    ByteWriter w;
    w.u16(uint16_t(InfoType::BlockSize)).u32(minimum).u32(preferred).u32(maximum);
    return w.take();
}

// --- transmission ------------------------------------------------------------

std::array<uint8_t, k_request_size> encode_request(const Request& r)
{
    std::array<uint8_t, k_request_size> b{};
    store_be32(b.data(), k_request_magic);
    store_be16(b.data() + 4, r.flags);
    store_be16(b.data() + 6, r.type);
    store_be64(b.data() + 8, r.cookie);
    store_be64(b.data() + 16, r.offset);
    store_be32(b.data() + 24, r.length);
    return b;
}

Result<Request> decode_request(std::span<const uint8_t, k_request_size> bytes)
{
    uint32_t magic = load_be32(bytes.data());
    if (magic != k_request_magic)
        return fail(fmt::format("bad request magic 0x{:08x}", magic), EPROTO);
    Request r;
    r.flags = load_be16(bytes.data() + 4);
    r.type = load_be16(bytes.data() + 6);
    r.cookie = load_be64(bytes.data() + 8);
    r.offset = load_be64(bytes.data() + 16);
    r.length = load_be32(bytes.data() + 24);
    return r;
}

std::array<uint8_t, k_simple_reply_size> encode_simple_reply(uint32_t error, uint64_t cookie)
{
    std::array<uint8_t, k_simple_reply_size> b{};
    store_be32(b.data(), k_simple_reply_magic);
    store_be32(b.data() + 4, error);
    store_be64(b.data() + 8, cookie);
    return b;
}

std::array<uint8_t, k_chunk_header_size> encode_chunk_header(uint16_t flags, Chunk type, uint64_t cookie,
                                                             uint32_t length)
{
    std::array<uint8_t, k_chunk_header_size> b{};
    store_be32(b.data(), k_structured_reply_magic);
    store_be16(b.data() + 4, flags);
    store_be16(b.data() + 6, uint16_t(type));
    store_be64(b.data() + 8, cookie);
    store_be32(b.data() + 16, length);
    return b;
}

Result<size_t> reply_header_rest(std::span<const uint8_t, 4> magic)
{
    uint32_t m = load_be32(magic.data());
    if (m == k_simple_reply_magic)
        return k_simple_reply_size - 4;
    if (m == k_structured_reply_magic)
        return k_chunk_header_size - 4;
    return fail(fmt::format("bad reply magic 0x{:08x}", m), EPROTO);
}

Result<ReplyHeader> decode_reply_header(std::span<const uint8_t> bytes)
{
    ByteReader r(bytes);
    uint32_t magic = r.u32();
    ReplyHeader h;
    if (magic == k_simple_reply_magic) {
        h.error = r.u32();
        h.cookie = r.u64();
    } else if (magic == k_structured_reply_magic) {
        h.structured = true;
        h.flags = r.u16();
        h.type = r.u16();
        h.cookie = r.u64();
        h.length = r.u32();
    } else {
        return fail(fmt::format("bad reply magic 0x{:08x}", magic), EPROTO);
    }
    if (!r.at_end())
        return fail("truncated reply header", EPROTO);
    return h;
}

std::vector<uint8_t> encode_error_chunk(uint32_t error, std::string_view message)
{
    message = message.substr(0, k_max_string);
    ByteWriter w;
    w.u32(error).u16(uint16_t(message.size())).str(message);
    return w.take();
}

Result<ErrorChunk> parse_error_chunk(uint16_t type, std::span<const uint8_t> payload)
{
    ByteReader r(payload);
    ErrorChunk e;
    e.error = r.u32();
    uint16_t len = r.u16();
    if (!r.ok())
        return fail("error chunk shorter than 6 bytes", EPROTO);
    if (len > k_max_string || len > r.remaining())
        return fail(fmt::format("error chunk message length {} exceeds the chunk", len), EPROTO);
    e.message = r.str(len);
    if (type == uint16_t(Chunk::ErrorOffset))
        e.offset = r.u64();
    if (!r.at_end())
        return fail("error chunk length does not match its contents", EPROTO);
    if (e.error == 0)
        return fail("error chunk with error value 0", EPROTO);
    return e;
}

Result<BlockStatusChunk> parse_block_status_chunk(std::span<const uint8_t> payload)
{
    if (payload.size() < 12 || (payload.size() - 4) % 8 != 0)
        return fail(fmt::format("block status chunk of {} bytes", payload.size()), EPROTO);
    ByteReader r(payload);
    BlockStatusChunk c;
    c.context = r.u32();
    c.extents.reserve((payload.size() - 4) / 8);
    while (r.remaining() >= 8) {
        Extent e;
        e.length = r.u32();
        e.flags = r.u32();
        if (e.length == 0)
            return fail("block status extent of length 0", EPROTO);
        c.extents.push_back(e);
    }
    return c;
}

} // namespace emu::storage::nbd

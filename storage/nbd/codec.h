// storage/nbd/codec.h — the NBD wire codec: fixed-size headers to and from
// bytes, and strict parsers for the option payloads a server receives and the
// reply payloads a client receives. Parsers never trust a length: every field
// is checked against the bytes actually present and the protocol's limits
// before anything is allocated or copied.
#pragma once

#include "storage/error.h"
#include "storage/nbd/protocol.h"

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace emu::storage::nbd {

// A cursor over received bytes; reads past the end set a sticky failure and
// yield zeroes, so a parser checks `ok()` once at the end.
class ByteReader {
public:
    explicit ByteReader(std::span<const uint8_t> data) : m_data(data) {}

    uint8_t u8();
    uint16_t u16();
    uint32_t u32();
    uint64_t u64();
    // `n` bytes as a string (empty and a failure when fewer remain).
    std::string str(size_t n);
    std::span<const uint8_t> bytes(size_t n);
    size_t remaining() const { return m_failed ? 0 : m_data.size() - m_pos; }
    bool ok() const { return !m_failed; }
    bool at_end() const { return !m_failed && m_pos == m_data.size(); }

private:
    bool take(size_t n);
    std::span<const uint8_t> m_data;
    size_t m_pos = 0;
    bool m_failed = false;
};

// Appends big-endian fields to a byte vector.
class ByteWriter {
public:
    ByteWriter& u16(uint16_t v);
    ByteWriter& u32(uint32_t v);
    ByteWriter& u64(uint64_t v);
    ByteWriter& bytes(std::span<const uint8_t> b);
    ByteWriter& str(std::string_view s);
    std::vector<uint8_t>& data() { return m_data; }
    std::vector<uint8_t> take() { return std::move(m_data); }

private:
    std::vector<uint8_t> m_data;
};

// Is this a protocol string: at most 4096 bytes and no NUL?
bool valid_string(std::string_view s);

// --- handshake ---------------------------------------------------------------

std::array<uint8_t, k_greeting_size> encode_greeting(uint16_t handshake_flags);
// The 16-bit handshake flags, or an error when the magic numbers are wrong.
Result<uint16_t> decode_greeting(std::span<const uint8_t, k_greeting_size> bytes);

struct OptionHeader {
    uint32_t option = 0;
    uint32_t length = 0;
};
std::array<uint8_t, k_option_header_size> encode_option_header(uint32_t option, uint32_t length);
Result<OptionHeader> decode_option_header(std::span<const uint8_t, k_option_header_size> bytes);

struct OptionReplyHeader {
    uint32_t option = 0;
    uint32_t type = 0;
    uint32_t length = 0;
};
std::vector<uint8_t> encode_option_reply(uint32_t option, Rep type, std::span<const uint8_t> payload = {});
Result<OptionReplyHeader> decode_option_reply_header(std::span<const uint8_t, k_option_reply_header_size> bytes);

// NBD_OPT_INFO / NBD_OPT_GO payload.
struct InfoRequest {
    std::string name;
    std::vector<uint16_t> requests;
};
Result<InfoRequest> parse_info_request(std::span<const uint8_t> payload);
std::vector<uint8_t> encode_info_request(std::string_view name, std::span<const uint16_t> requests);

// NBD_OPT_LIST_META_CONTEXT / NBD_OPT_SET_META_CONTEXT payload.
struct MetaContextRequest {
    std::string name;
    std::vector<std::string> queries;
};
Result<MetaContextRequest> parse_meta_context_request(std::span<const uint8_t> payload);
std::vector<uint8_t> encode_meta_context_request(std::string_view name, std::span<const std::string> queries);

// NBD_REP_INFO payloads.
std::vector<uint8_t> encode_info_export(uint64_t size, uint16_t flags);
std::vector<uint8_t> encode_info_string(InfoType type, std::string_view text);
std::vector<uint8_t> encode_info_block_size(uint32_t minimum, uint32_t preferred, uint32_t maximum);

// --- transmission ------------------------------------------------------------

struct Request {
    uint16_t flags = 0;
    uint16_t type = 0;
    uint64_t cookie = 0;
    uint64_t offset = 0;
    uint32_t length = 0;
};
std::array<uint8_t, k_request_size> encode_request(const Request& r);
Result<Request> decode_request(std::span<const uint8_t, k_request_size> bytes);

std::array<uint8_t, k_simple_reply_size> encode_simple_reply(uint32_t error, uint64_t cookie);
std::array<uint8_t, k_chunk_header_size> encode_chunk_header(uint16_t flags, Chunk type, uint64_t cookie,
                                                             uint32_t length);

// The header of a reply as the client sees it: simple (error, cookie) or a
// structured chunk (flags, type, cookie, payload length).
struct ReplyHeader {
    bool structured = false;
    uint32_t error = 0; // simple replies
    uint16_t flags = 0; // structured chunks
    uint16_t type = 0;
    uint64_t cookie = 0;
    uint32_t length = 0;
};
// The first 4 bytes name the kind; `rest` must then hold 12 (simple) or 16
// (structured) more bytes. Returns how many more bytes the header needs.
Result<size_t> reply_header_rest(std::span<const uint8_t, 4> magic);
Result<ReplyHeader> decode_reply_header(std::span<const uint8_t> bytes);

// Structured reply payloads.
std::vector<uint8_t> encode_error_chunk(uint32_t error, std::string_view message);
struct ErrorChunk {
    uint32_t error = 0;
    std::string message;
    std::optional<uint64_t> offset; // NBD_REPLY_TYPE_ERROR_OFFSET
};
Result<ErrorChunk> parse_error_chunk(uint16_t type, std::span<const uint8_t> payload);

struct Extent {
    uint32_t length = 0;
    uint32_t flags = 0;
};
struct BlockStatusChunk {
    uint32_t context = 0;
    std::vector<Extent> extents;
};
Result<BlockStatusChunk> parse_block_status_chunk(std::span<const uint8_t> payload);

} // namespace emu::storage::nbd

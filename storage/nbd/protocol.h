// storage/nbd/protocol.h — NBD protocol constants (the fixed newstyle
// handshake, options and their replies, transmission requests, simple and
// structured replies), as numbered by the NBD protocol specification. Every
// field on the wire is big-endian. Shared by the server and the client.
#pragma once

#include <cstdint>
#include <string_view>

namespace emu::storage::nbd {

// Magic numbers.
constexpr uint64_t k_init_magic = 0x4e42444d41474943ull;   // "NBDMAGIC"
constexpr uint64_t k_option_magic = 0x49484156454f5054ull; // "IHAVEOPT"
constexpr uint64_t k_option_reply_magic = 0x0003e889045565a9ull;
constexpr uint32_t k_request_magic = 0x25609513;
constexpr uint32_t k_simple_reply_magic = 0x67446698;
constexpr uint32_t k_structured_reply_magic = 0x668e33ef;

constexpr uint16_t k_default_port = 10809;

// Sizes of the fixed parts of messages.
constexpr size_t k_greeting_size = 18;      // magic, magic, handshake flags
constexpr size_t k_option_header_size = 16; // magic, option, length
constexpr size_t k_option_reply_header_size = 20;
constexpr size_t k_request_size = 28;
constexpr size_t k_simple_reply_size = 16;
constexpr size_t k_chunk_header_size = 20;
constexpr size_t k_export_name_reply_size = 10; // size, flags (+124 zero bytes)
constexpr size_t k_export_name_zeroes = 124;

// Limits. Strings (export names, descriptions, messages, context names) are at
// most 4096 bytes; requests carrying or returning data at most 32 MiB (what
// every client must accept); option payloads at most 64 KiB (a few names).
constexpr size_t k_max_string = 4096;
constexpr uint32_t k_max_payload = 32u << 20;
constexpr uint32_t k_max_option_length = 64u << 10;
constexpr uint32_t k_max_meta_queries = 128;
constexpr uint32_t k_preferred_block = 4096;

// Handshake flags (server) and client flags.
constexpr uint16_t k_flag_fixed_newstyle = 1u << 0;
constexpr uint16_t k_flag_no_zeroes = 1u << 1;
constexpr uint32_t k_client_fixed_newstyle = 1u << 0;
constexpr uint32_t k_client_no_zeroes = 1u << 1;

// Transmission flags.
enum TransmissionFlag : uint16_t {
    k_has_flags = 1u << 0,
    k_read_only = 1u << 1,
    k_send_flush = 1u << 2,
    k_send_fua = 1u << 3,
    k_rotational = 1u << 4,
    k_send_trim = 1u << 5,
    k_send_write_zeroes = 1u << 6,
    k_send_df = 1u << 7,
    k_can_multi_conn = 1u << 8,
    k_send_resize = 1u << 9,
    k_send_cache = 1u << 10,
    k_send_fast_zero = 1u << 11,
};

// Options.
enum class Option : uint32_t {
    ExportName = 1,
    Abort = 2,
    List = 3,
    PeekExport = 4, // withdrawn
    StartTls = 5,
    Info = 6,
    Go = 7,
    StructuredReply = 8,
    ListMetaContext = 9,
    SetMetaContext = 10,
    ExtendedHeaders = 11,
};

// Option reply types; errors have bit 31 set.
constexpr uint32_t k_rep_error_bit = 1u << 31;
enum class Rep : uint32_t {
    Ack = 1,
    Server = 2,
    Info = 3,
    MetaContext = 4,
    ErrUnsup = k_rep_error_bit | 1,
    ErrPolicy = k_rep_error_bit | 2,
    ErrInvalid = k_rep_error_bit | 3,
    ErrPlatform = k_rep_error_bit | 4,
    ErrTlsReqd = k_rep_error_bit | 5,
    ErrUnknown = k_rep_error_bit | 6,
    ErrShutdown = k_rep_error_bit | 7,
    ErrBlockSizeReqd = k_rep_error_bit | 8,
    ErrTooBig = k_rep_error_bit | 9,
    ErrExtHeaderReqd = k_rep_error_bit | 10,
};

// NBD_REP_INFO types.
enum class InfoType : uint16_t {
    Export = 0,
    Name = 1,
    Description = 2,
    BlockSize = 3,
};

// Commands and command flags.
enum class Cmd : uint16_t {
    Read = 0,
    Write = 1,
    Disc = 2,
    Flush = 3,
    Trim = 4,
    Cache = 5,
    WriteZeroes = 6,
    BlockStatus = 7,
    Resize = 8,
};

enum CmdFlag : uint16_t {
    k_cmd_fua = 1u << 0,
    k_cmd_no_hole = 1u << 1,
    k_cmd_df = 1u << 2,
    k_cmd_req_one = 1u << 3,
    k_cmd_fast_zero = 1u << 4,
    k_cmd_payload_len = 1u << 5, // extended headers only
};

// Structured reply chunks.
constexpr uint16_t k_reply_flag_done = 1u << 0;
constexpr uint16_t k_chunk_error_bit = 1u << 15;
enum class Chunk : uint16_t {
    None = 0,
    OffsetData = 1,
    OffsetHole = 2,
    BlockStatus = 5,
    BlockStatusExt = 6,
    Error = k_chunk_error_bit | 1,
    ErrorOffset = k_chunk_error_bit | 2,
};

// Error values of replies (errno-like, but fixed by the protocol).
enum NbdErrno : uint32_t {
    k_eperm = 1,
    k_eio = 5,
    k_enomem = 12,
    k_einval = 22,
    k_enospc = 28,
    k_eoverflow = 75,
    k_enotsup = 95,
    k_eshutdown = 108,
};

// The one metadata context defined by the protocol; its extent flags.
constexpr std::string_view k_base_allocation = "base:allocation";
constexpr uint32_t k_state_hole = 1u << 0;
constexpr uint32_t k_state_zero = 1u << 1;

// Names for messages and logs.
std::string_view option_name(uint32_t option);
std::string_view rep_name(uint32_t rep);
std::string_view cmd_name(uint16_t cmd);
// The text of a reply error ("Invalid argument" for k_einval).
std::string_view nbd_error_text(uint32_t error);
// A host errno as the protocol's error value (EIO for anything unknown).
uint32_t errno_to_nbd(int err);
// The protocol's error value as a host errno (EINVAL for unknown values).
int nbd_to_errno(uint32_t error);

} // namespace emu::storage::nbd

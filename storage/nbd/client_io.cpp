// storage/nbd/client_io.cpp — the client's transmission phase (requests and
// strictly checked replies) and NbdDriver, the `nbd` protocol driver.
#include "storage/nbd/client.h"

#include "storage/endian.h"

#include <cstring>
#include <fmt/format.h>
#include <map>

namespace emu::storage::nbd {

namespace {

// Chunks other than data chunks are small: error messages, extent lists.
constexpr uint32_t k_max_chunk = (1u << 20) + 4;
// The largest WRITE_ZEROES / TRIM / BLOCK_STATUS length, a multiple of any
// minimum block size (they carry no payload: the 32-bit field is the limit).
constexpr uint32_t k_max_unpayloaded = 0x80000000u;

} // namespace

NbdClient::~NbdClient()
{
    disconnect();
}

void NbdClient::disconnect()
{
    if (!m_channel || m_broken)
        return;
    Request req;
    req.type = uint16_t(Cmd::Disc);
    req.cookie = m_next_cookie++;
    (void)m_channel->write(encode_request(req));
    m_broken = true;
    m_channel->shutdown();
}

std::unexpected<Error> NbdClient::broken(const std::string& why)
{
    m_broken = true;
    if (m_channel)
        m_channel->shutdown();
    return fail(fmt::format("{}: {}", m_target.name, why), EPROTO);
}

Result<uint32_t> NbdClient::transact(const Request& req, std::span<const uint8_t> payload, std::span<uint8_t> read_buf,
                                     std::vector<Extent>* extents)
{
    if (m_broken)
        return fail(fmt::format("{}: the connection to the server is lost", m_target.name), EIO);
    m_last_error.clear();
    auto header = encode_request(req);
    std::span<const uint8_t> parts[2] = {header, payload};
    if (auto r = m_channel->write(std::span<const std::span<const uint8_t>>(parts)); !r) {
        m_broken = true;
        return chain(fmt::format("{}: sending {}", m_target.name, cmd_name(req.type)), r.error());
    }
    uint8_t hb[k_chunk_header_size];
    if (auto r = m_channel->read(std::span<uint8_t>(hb, 4)); !r) {
        m_broken = true;
        return chain(fmt::format("{}: reading the reply to {}", m_target.name, cmd_name(req.type)), r.error());
    }
    auto rest = reply_header_rest(std::span<const uint8_t, 4>(hb, 4));
    if (!rest)
        return broken(rest.error().message);
    if (auto r = m_channel->read(std::span<uint8_t>(hb + 4, *rest)); !r) {
        m_broken = true;
        return chain(m_target.name, r.error());
    }
    auto h = decode_reply_header(std::span<const uint8_t>(hb, 4 + *rest));
    if (!h)
        return broken(h.error().message);
    if (h->cookie != req.cookie)
        return broken(fmt::format("reply for cookie {} while {} was expected", h->cookie, req.cookie));
    if (h->structured) {
        if (!m_structured)
            return broken("structured reply without NBD_OPT_STRUCTURED_REPLY");
        return read_structured(req, *h, read_buf, extents);
    }
    // A simple reply: READ data follows when it succeeded.
    if (Cmd(req.type) == Cmd::Read && h->error == 0) {
        if (m_structured)
            return broken("simple reply with data to NBD_CMD_READ after structured replies were negotiated");
        if (auto r = m_channel->read(read_buf); !r) {
            m_broken = true;
            return chain(m_target.name, r.error());
        }
    }
    if (Cmd(req.type) == Cmd::BlockStatus && h->error == 0)
        return broken("simple success reply to NBD_CMD_BLOCK_STATUS");
    return h->error;
}

Result<uint32_t> NbdClient::read_structured(const Request& req, ReplyHeader h, std::span<uint8_t> read_buf,
                                            std::vector<Extent>* extents)
{
    const bool is_read = Cmd(req.type) == Cmd::Read;
    const bool is_status = Cmd(req.type) == Cmd::BlockStatus;
    uint32_t error = 0;
    std::map<uint64_t, uint64_t> covered; // start -> end, relative to the request
    uint64_t covered_bytes = 0;
    bool got_status = false;
    std::vector<uint8_t> payload;
    auto cover = [&](uint64_t start, uint64_t length) -> bool {
        uint64_t end = start + length;
        auto next = covered.lower_bound(start);
        if (next != covered.end() && next->first < end)
            return false;
        if (next != covered.begin() && std::prev(next)->second > start)
            return false;
        covered.emplace(start, end);
        covered_bytes += length;
        return true;
    };
    while (true) {
        const Chunk type = Chunk(h.type);
        if (is_read && type == Chunk::OffsetData) {
            uint8_t ob[8];
            if (h.length < 9 || h.length - 8 > req.length)
                return broken(fmt::format("data chunk of {} bytes for a read of {}", h.length, req.length));
            if (auto r = m_channel->read(ob); !r)
                return broken(r.error().message);
            uint64_t offset = load_be64(ob);
            uint64_t length = h.length - 8;
            if (offset < req.offset || offset - req.offset > req.length - length)
                return broken(
                    fmt::format("data chunk at {} outside the read of {} bytes at {}", offset, req.length, req.offset));
            if (!cover(offset - req.offset, length))
                return broken("overlapping data chunks");
            if (auto r = m_channel->read(read_buf.subspan(offset - req.offset, length)); !r)
                return broken(r.error().message);
        } else if (is_read && type == Chunk::OffsetHole) {
            uint8_t hb[12];
            if (h.length != 12)
                return broken(fmt::format("hole chunk of {} bytes", h.length));
            if (auto r = m_channel->read(hb); !r)
                return broken(r.error().message);
            uint64_t offset = load_be64(hb);
            uint32_t length = load_be32(hb + 8);
            if (length == 0 || offset < req.offset || offset - req.offset > req.length ||
                length > req.length - (offset - req.offset))
                return broken(
                    fmt::format("hole chunk at {} outside the read of {} bytes at {}", offset, req.length, req.offset));
            if (!cover(offset - req.offset, length))
                return broken("overlapping hole chunks");
            std::memset(read_buf.data() + (offset - req.offset), 0, length);
        } else if (type == Chunk::None) {
            if (h.length != 0 || !(h.flags & k_reply_flag_done))
                return broken("malformed NBD_REPLY_TYPE_NONE chunk");
        } else {
            const bool error_chunk = h.type & k_chunk_error_bit;
            if (!error_chunk && !(is_status && type == Chunk::BlockStatus))
                return broken(fmt::format("unexpected chunk type {} in the reply to {}", h.type, cmd_name(req.type)));
            if (h.length > k_max_chunk)
                return broken(fmt::format("chunk of {} bytes is too large", h.length));
            payload.resize(h.length);
            if (auto r = m_channel->read(payload); !r)
                return broken(r.error().message);
            if (type == Chunk::BlockStatus) {
                auto bs = parse_block_status_chunk(payload);
                if (!bs)
                    return broken(bs.error().message);
                if (m_meta_id && bs->context == *m_meta_id && extents) {
                    if (got_status)
                        return broken("two block status chunks for one context");
                    got_status = true;
                    *extents = std::move(bs->extents);
                }
            } else {
                auto e = parse_error_chunk(h.type, payload);
                if (!e) {
                    if (h.length < 6)
                        return broken(e.error().message);
                    e = ErrorChunk{load_be32(payload.data()), {}, {}};
                    if (e->error == 0)
                        e->error = k_einval;
                }
                if (e->offset &&
                    (*e->offset < req.offset || *e->offset - req.offset >= std::max<uint32_t>(req.length, 1)))
                    return broken("error offset outside the request");
                if (error == 0) {
                    error = e->error;
                    m_last_error = e->message;
                }
            }
        }
        if (h.flags & k_reply_flag_done)
            break;
        uint8_t hb[k_chunk_header_size];
        if (auto r = m_channel->read(hb); !r)
            return broken(r.error().message);
        auto next = decode_reply_header(hb);
        if (!next || !next->structured)
            return broken("bad chunk in a structured reply");
        if (next->cookie != req.cookie)
            return broken("chunks of another request interleaved with one request in flight");
        h = *next;
    }
    if (error)
        return error;
    if (is_read && covered_bytes != req.length)
        return broken(fmt::format("the reply covers {} of {} bytes read", covered_bytes, req.length));
    if (is_status && !got_status)
        return broken("no block status chunk for base:allocation");
    return 0u;
}

Result<void> NbdClient::check_error(const Request& req, Result<uint32_t> r, std::string_view what)
{
    if (!r)
        return std::unexpected(r.error());
    if (*r == 0)
        return {};
    std::string msg = fmt::format("{}: {} failed: {}", m_target.name, what, nbd_error_text(*r));
    if (!m_last_error.empty() && valid_string(m_last_error))
        msg += fmt::format(" (server: {})", m_last_error);
    return fail(msg, nbd_to_errno(*r));
}

Result<void> NbdClient::read(uint64_t offset, std::span<uint8_t> buf, bool df)
{
    Request req{uint16_t(df ? k_cmd_df : 0), uint16_t(Cmd::Read), m_next_cookie++, offset, uint32_t(buf.size())};
    return check_error(req, transact(req, {}, buf, nullptr), fmt::format("read of {} bytes at {}", buf.size(), offset));
}

Result<void> NbdClient::write(uint64_t offset, std::span<const uint8_t> buf, bool fua)
{
    Request req{uint16_t(fua ? k_cmd_fua : 0), uint16_t(Cmd::Write), m_next_cookie++, offset, uint32_t(buf.size())};
    return check_error(req, transact(req, buf, {}, nullptr),
                       fmt::format("write of {} bytes at {}", buf.size(), offset));
}

Result<void> NbdClient::write_zeroes(uint64_t offset, uint32_t bytes, uint16_t flags)
{
    Request req{flags, uint16_t(Cmd::WriteZeroes), m_next_cookie++, offset, bytes};
    return check_error(req, transact(req, {}, {}, nullptr),
                       fmt::format("write zeroes of {} bytes at {}", bytes, offset));
}

Result<void> NbdClient::trim(uint64_t offset, uint32_t bytes)
{
    Request req{0, uint16_t(Cmd::Trim), m_next_cookie++, offset, bytes};
    return check_error(req, transact(req, {}, {}, nullptr), fmt::format("trim of {} bytes at {}", bytes, offset));
}

Result<void> NbdClient::flush()
{
    Request req{0, uint16_t(Cmd::Flush), m_next_cookie++, 0, 0};
    return check_error(req, transact(req, {}, {}, nullptr), "flush");
}

Result<void> NbdClient::cache(uint64_t offset, uint32_t bytes)
{
    Request req{0, uint16_t(Cmd::Cache), m_next_cookie++, offset, bytes};
    return check_error(req, transact(req, {}, {}, nullptr), "cache");
}

Result<std::vector<Extent>> NbdClient::block_status(uint64_t offset, uint32_t bytes, bool req_one)
{
    if (!m_meta_id)
        return fail(fmt::format("{}: the server offers no base:allocation context", m_target.name), ENOTSUP);
    Request req{uint16_t(req_one ? k_cmd_req_one : 0), uint16_t(Cmd::BlockStatus), m_next_cookie++, offset, bytes};
    std::vector<Extent> extents;
    if (auto r = check_error(req, transact(req, {}, {}, &extents), "block status"); !r)
        return std::unexpected(r.error());
    return extents;
}

Result<uint32_t> NbdClient::raw_request(const Request& req, std::span<const uint8_t> payload)
{
    std::vector<uint8_t> buf(Cmd(req.type) == Cmd::Read ? req.length : 0);
    std::vector<Extent> extents;
    return transact(req, payload, buf, &extents);
}

// --- NbdDriver -------------------------------------------------------------------

std::string canonical_name(const NbdTarget& t)
{
    const char* tls = t.tls ? "s" : "";
    if (t.address.is_unix)
        return t.export_name.empty() ? fmt::format("nbd{}+unix://?socket={}", tls, t.address.path)
                                     : fmt::format("nbd{}+unix:///{}?socket={}", tls, t.export_name, t.address.path);
    std::string host = t.address.host.find(':') != std::string::npos ? "[" + t.address.host + "]" : t.address.host;
    return t.export_name.empty() ? fmt::format("nbd{}://{}:{}", tls, host, t.address.port)
                                 : fmt::format("nbd{}://{}:{}/{}", tls, host, t.address.port, t.export_name);
}

Result<std::unique_ptr<NbdDriver>> NbdDriver::open(const std::string& name, bool read_only)
{
    auto target = parse_nbd_filename(name);
    if (!target)
        return std::unexpected(target.error());
    auto client = NbdClient::connect(*target);
    if (!client)
        return std::unexpected(client.error());
    bool ro = read_only || (*client)->read_only();
    return std::unique_ptr<NbdDriver>(new NbdDriver(canonical_name(*target), std::move(*client), ro));
}

Result<void> NbdDriver::in_bounds(uint64_t offset, uint64_t bytes) const
{
    const uint64_t size = m_client->size();
    if (offset > size || bytes > size - offset)
        return fail(fmt::format("{}: access of {} bytes at {} is beyond the end of the export ({} bytes)", m_name,
                                bytes, offset, size),
                    EINVAL);
    return {};
}

Result<void> NbdDriver::writable() const
{
    if (m_read_only)
        return fail(fmt::format("{}: the export is read-only", m_name), EROFS);
    return {};
}

Result<void> NbdDriver::read(uint64_t offset, std::span<uint8_t> buf)
{
    if (auto r = in_bounds(offset, buf.size()); !r)
        return r;
    const size_t step = m_client->max_block();
    for (size_t done = 0; done < buf.size();) {
        size_t n = std::min(step, buf.size() - done);
        if (auto r = m_client->read(offset + done, buf.subspan(done, n)); !r)
            return r;
        done += n;
    }
    return {};
}

Result<void> NbdDriver::write(uint64_t offset, std::span<const uint8_t> buf)
{
    if (auto r = writable(); !r)
        return r;
    if (auto r = in_bounds(offset, buf.size()); !r)
        return r;
    const size_t step = m_client->max_block();
    for (size_t done = 0; done < buf.size();) {
        size_t n = std::min(step, buf.size() - done);
        if (auto r = m_client->write(offset + done, buf.subspan(done, n)); !r)
            return r;
        done += n;
    }
    return {};
}

Result<void> NbdDriver::write_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap)
{
    if (auto r = writable(); !r)
        return r;
    if (auto r = in_bounds(offset, bytes); !r)
        return r;
    if (m_client->flags() & k_send_write_zeroes) {
        const uint16_t flags = may_unmap ? 0 : k_cmd_no_hole;
        const uint64_t step = m_client->max_block();
        for (uint64_t done = 0; done < bytes;) {
            uint32_t n = uint32_t(std::min(step, bytes - done));
            if (auto r = m_client->write_zeroes(offset + done, n, flags); !r)
                return r;
            done += n;
        }
        return {};
    }
    std::vector<uint8_t> zeroes(size_t(std::min<uint64_t>(bytes, m_client->max_block())), 0);
    for (uint64_t done = 0; done < bytes;) {
        size_t n = size_t(std::min<uint64_t>(zeroes.size(), bytes - done));
        if (auto r = m_client->write(offset + done, {zeroes.data(), n}); !r)
            return r;
        done += n;
    }
    return {};
}

Result<void> NbdDriver::discard(uint64_t offset, uint64_t bytes)
{
    if (auto r = writable(); !r)
        return r;
    if (auto r = in_bounds(offset, bytes); !r)
        return r;
    if (!(m_client->flags() & k_send_trim))
        return {}; // a hint the server does not take
    for (uint64_t done = 0; done < bytes;) {
        uint32_t n = uint32_t(std::min<uint64_t>(k_max_unpayloaded, bytes - done));
        if (auto r = m_client->trim(offset + done, n); !r)
            return r;
        done += n;
    }
    return {};
}

Result<void> NbdDriver::flush()
{
    if (m_read_only || !(m_client->flags() & k_send_flush))
        return {};
    return m_client->flush();
}

Result<BlockStatus> NbdDriver::block_status(uint64_t offset, uint64_t bytes)
{
    BlockStatus st;
    st.allocated = true;
    st.host_offset = offset; // the export's own offsets, as a file's
    const uint64_t size = m_client->size();
    if (offset >= size) {
        st.length = bytes;
        st.zero = true;
        return st;
    }
    bytes = std::min(bytes, size - offset);
    if (!m_client->has_block_status()) {
        st.length = bytes;
        st.data = true;
        return st;
    }
    auto extents = m_client->block_status(offset, uint32_t(std::min<uint64_t>(bytes, k_max_unpayloaded)));
    if (!extents)
        return std::unexpected(extents.error());
    const Extent& e = extents->front();
    st.length = std::min<uint64_t>(e.length, bytes);
    st.data = !(e.flags & k_state_hole);
    st.zero = e.flags & k_state_zero;
    return st;
}

Result<void> NbdDriver::close()
{
    auto r = flush();
    m_client->disconnect();
    return r;
}

} // namespace emu::storage::nbd

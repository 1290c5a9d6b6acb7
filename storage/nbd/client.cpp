// storage/nbd/client.cpp — the client side of the handshake (the
// transmission phase and the protocol driver are in client_io.cpp).
#include "storage/nbd/client.h"

#include "storage/endian.h"
#include "storage/nbd/tls.h"

#include <fmt/format.h>
#include <sys/socket.h>
#include <unistd.h>

namespace emu::storage::nbd {

namespace {

// A server that does not answer the handshake within this time is given up.
constexpr auto k_handshake_timeout = std::chrono::seconds(60);
// Option replies carry names and descriptions: anything larger is refused.
constexpr uint32_t k_max_option_reply = 64u << 10;

} // namespace

Result<void> NbdClient::open_channel()
{
    auto fd = connect_to(m_target.address);
    if (!fd)
        return chain(m_target.name, fd.error());
    m_channel = std::make_unique<SocketChannel>(*fd);
    m_channel->set_deadline(Channel::Clock::now() + k_handshake_timeout);
    return {};
}

std::unexpected<Error> NbdClient::refused(std::string_view what, const OptionReply& reply) const
{
    std::string text(rep_name(reply.type));
    std::string message(reply.data.begin(), reply.data.end());
    if (!(reply.type & k_rep_error_bit))
        text = fmt::format("unexpected reply {}", reply.type);
    if (!message.empty() && valid_string(message) && Rep(reply.type) != Rep::ErrUnknown)
        text += ": " + message;
    int err = EINVAL;
    switch (Rep(reply.type)) {
    case Rep::ErrUnknown: err = ENOENT; break;
    case Rep::ErrPolicy:
    case Rep::ErrTlsReqd: err = EACCES; break;
    case Rep::ErrUnsup: err = ENOTSUP; break;
    case Rep::ErrShutdown: err = ESHUTDOWN; break;
    default: break;
    }
    if (Rep(reply.type) == Rep::ErrTlsReqd)
        text += " (the server requires TLS: use nbds:// or tls-creds=DIR)";
    return fail(fmt::format("{}: {}: {}", m_target.name, what, text), err);
}

Result<void> NbdClient::send_option(Option option, std::span<const uint8_t> payload)
{
    auto header = encode_option_header(uint32_t(option), uint32_t(payload.size()));
    std::span<const uint8_t> parts[2] = {header, payload};
    if (auto r = m_channel->write(std::span<const std::span<const uint8_t>>(parts)); !r)
        return chain(fmt::format("{}: sending {}", m_target.name, option_name(uint32_t(option))), r.error());
    return {};
}

Result<NbdClient::OptionReply> NbdClient::read_option_reply(Option option)
{
    uint8_t hb[k_option_reply_header_size];
    if (auto r = m_channel->read(hb); !r)
        return chain(fmt::format("{}: reading the reply to {}", m_target.name, option_name(uint32_t(option))),
                     r.error());
    auto h = decode_option_reply_header(std::span<const uint8_t, k_option_reply_header_size>(hb));
    if (!h)
        return chain(m_target.name, h.error());
    if (h->option != uint32_t(option))
        return fail(fmt::format("{}: the server answered option {} to {}", m_target.name, h->option,
                                option_name(uint32_t(option))),
                    EPROTO);
    if (h->length > k_max_option_reply)
        return fail(fmt::format("{}: option reply of {} bytes is too large", m_target.name, h->length), EPROTO);
    OptionReply reply;
    reply.type = h->type;
    reply.data.resize(h->length);
    if (auto r = m_channel->read(reply.data); !r)
        return chain(m_target.name, r.error());
    return reply;
}

Result<void> NbdClient::handshake(bool list_only)
{
    uint8_t greeting[k_greeting_size];
    if (auto r = m_channel->read(greeting); !r)
        return chain(fmt::format("{}: reading the server's greeting", m_target.name), r.error());
    auto hflags = decode_greeting(std::span<const uint8_t, k_greeting_size>(greeting));
    if (!hflags)
        return chain(m_target.name, hflags.error());
    m_fixed = *hflags & k_flag_fixed_newstyle;
    m_no_zeroes = *hflags & k_flag_no_zeroes;
    if (!m_fixed)
        return fail(fmt::format("{}: the server does not support the fixed newstyle handshake", m_target.name), EPROTO);
    uint8_t cf[4];
    store_be32(cf, k_client_fixed_newstyle | (m_no_zeroes ? k_client_no_zeroes : 0));
    if (auto r = m_channel->write(cf); !r)
        return chain(m_target.name, r.error());

    if (m_target.tls) {
        std::shared_ptr<TlsCredentials> creds;
        TlsOptions to;
        to.endpoint = TlsEndpoint::Client;
        to.dir = m_target.tls_creds_dir;
        auto loaded = TlsCredentials::load(to);
        if (!loaded)
            return chain(m_target.name, loaded.error());
        if (auto r = send_option(Option::StartTls); !r)
            return r;
        auto reply = read_option_reply(Option::StartTls);
        if (!reply)
            return std::unexpected(reply.error());
        if (Rep(reply->type) != Rep::Ack)
            return refused("server refused TLS", *reply);
        std::string host = m_target.tls_hostname;
        if (host.empty() && !m_target.address.is_unix)
            host = m_target.address.host;
        if (auto r = m_channel->start_tls(**loaded, host); !r)
            return chain(m_target.name, r.error());
    }
    if (list_only)
        return {};

    if (auto r = send_option(Option::StructuredReply); !r)
        return r;
    auto sr = read_option_reply(Option::StructuredReply);
    if (!sr)
        return std::unexpected(sr.error());
    if (Rep(sr->type) == Rep::ErrTlsReqd)
        return refused("server refused the connection", *sr);
    m_structured = Rep(sr->type) == Rep::Ack;

    if (m_structured) {
        std::vector<std::string> queries{std::string(k_base_allocation)};
        if (auto r = send_option(Option::SetMetaContext, encode_meta_context_request(m_target.export_name, queries));
            !r)
            return r;
        while (true) {
            auto reply = read_option_reply(Option::SetMetaContext);
            if (!reply)
                return std::unexpected(reply.error());
            if (Rep(reply->type) == Rep::MetaContext) {
                ByteReader rd(reply->data);
                uint32_t id = rd.u32();
                std::string name = rd.str(rd.remaining());
                if (!rd.ok())
                    return fail(fmt::format("{}: malformed NBD_REP_META_CONTEXT", m_target.name), EPROTO);
                if (name == k_base_allocation)
                    m_meta_id = id;
                continue;
            }
            if (Rep(reply->type) != Rep::Ack) // no block status, not an error
                m_meta_id.reset();
            break;
        }
    }
    return negotiate_export();
}

Result<void> NbdClient::negotiate_export()
{
    const uint16_t wanted[] = {uint16_t(InfoType::BlockSize)};
    if (auto r = send_option(Option::Go, encode_info_request(m_target.export_name, wanted)); !r)
        return r;
    bool have_export = false;
    while (true) {
        auto reply = read_option_reply(Option::Go);
        if (!reply)
            return std::unexpected(reply.error());
        const Rep type = Rep(reply->type);
        if (type == Rep::Info) {
            ByteReader rd(reply->data);
            uint16_t info = rd.u16();
            if (info == uint16_t(InfoType::Export)) {
                m_size = rd.u64();
                m_flags = rd.u16();
                if (!rd.at_end())
                    return fail(fmt::format("{}: malformed NBD_INFO_EXPORT", m_target.name), EPROTO);
                have_export = true;
            } else if (info == uint16_t(InfoType::BlockSize)) {
                uint32_t minimum = rd.u32(), preferred = rd.u32(), maximum = rd.u32();
                if (!rd.at_end() || minimum == 0 || (minimum & (minimum - 1)) || minimum > 65536 || preferred == 0 ||
                    maximum < minimum)
                    return fail(fmt::format("{}: malformed NBD_INFO_BLOCK_SIZE", m_target.name), EPROTO);
                m_min_block = minimum;
                m_max_block = std::min(maximum, k_max_payload);
                if (m_max_block < m_min_block)
                    m_max_block = m_min_block;
                m_max_block -= m_max_block % m_min_block;
            }
            continue; // other information is ignored
        }
        if (type == Rep::Ack) {
            if (!have_export)
                return fail(fmt::format("{}: the server accepted NBD_OPT_GO without NBD_INFO_EXPORT", m_target.name),
                            EPROTO);
            break;
        }
        if (type == Rep::ErrUnsup) {
            // An old server: NBD_OPT_EXPORT_NAME (which cannot report errors).
            auto name =
                std::span(reinterpret_cast<const uint8_t*>(m_target.export_name.data()), m_target.export_name.size());
            if (auto r = send_option(Option::ExportName, name); !r)
                return r;
            uint8_t b[k_export_name_reply_size + k_export_name_zeroes];
            size_t n = k_export_name_reply_size + (m_no_zeroes ? 0 : k_export_name_zeroes);
            if (auto r = m_channel->read(std::span<uint8_t>(b, n)); !r)
                return fail(fmt::format("{}: server refused export '{}'", m_target.name, m_target.export_name), ENOENT);
            m_size = load_be64(b);
            m_flags = load_be16(b + 8);
            m_meta_id.reset(); // contexts were set for an export name the server may not have checked
            break;
        }
        return refused(fmt::format("server refused export '{}'", m_target.export_name), *reply);
    }
    if (!(m_flags & k_has_flags))
        m_flags = k_has_flags;
    if (m_size > uint64_t(INT64_MAX))
        return fail(fmt::format("{}: export size {} is too large", m_target.name, m_size), EFBIG);
    m_channel->set_deadline(std::nullopt);
    return {};
}

Result<std::unique_ptr<NbdClient>> NbdClient::connect(const NbdTarget& target)
{
    std::unique_ptr<NbdClient> c(new NbdClient(target));
    if (auto r = c->open_channel(); !r)
        return std::unexpected(r.error());
    if (auto r = c->handshake(false); !r) {
        c->m_broken = true;
        return std::unexpected(r.error());
    }
    return c;
}

Result<std::vector<ExportListing>> NbdClient::list(const NbdTarget& target)
{
    std::unique_ptr<NbdClient> c(new NbdClient(target));
    c->m_broken = true; // never in transmission: no NBD_CMD_DISC
    if (auto r = c->open_channel(); !r)
        return std::unexpected(r.error());
    if (auto r = c->handshake(true); !r)
        return std::unexpected(r.error());
    if (c->send_option(Option::StructuredReply)) {
        auto sr = c->read_option_reply(Option::StructuredReply);
        if (!sr)
            return std::unexpected(sr.error());
        c->m_structured = Rep(sr->type) == Rep::Ack;
    }
    auto out = c->list_exports();
    if (c->send_option(Option::Abort))
        (void)c->read_option_reply(Option::Abort);
    return out;
}

Result<std::vector<ExportListing>> NbdClient::list_exports()
{
    if (auto r = send_option(Option::List); !r)
        return std::unexpected(r.error());
    std::vector<ExportListing> out;
    while (true) {
        auto reply = read_option_reply(Option::List);
        if (!reply)
            return std::unexpected(reply.error());
        if (Rep(reply->type) == Rep::Ack)
            break;
        if (Rep(reply->type) != Rep::Server)
            return refused("server refused to list its exports", *reply);
        ByteReader rd(reply->data);
        uint32_t len = rd.u32();
        if (!rd.ok() || len > rd.remaining())
            return fail(fmt::format("{}: malformed NBD_REP_SERVER", m_target.name), EPROTO);
        ExportListing e;
        e.name = rd.str(len);
        e.description = rd.str(rd.remaining());
        out.push_back(std::move(e));
    }
    for (auto& e : out) {
        const uint16_t wanted[] = {uint16_t(InfoType::Description), uint16_t(InfoType::BlockSize)};
        if (auto r = send_option(Option::Info, encode_info_request(e.name, wanted)); !r)
            return std::unexpected(r.error());
        while (true) {
            auto reply = read_option_reply(Option::Info);
            if (!reply)
                return std::unexpected(reply.error());
            if (Rep(reply->type) != Rep::Info)
                break; // ACK, or an error: the listing stays without details
            ByteReader rd(reply->data);
            uint16_t info = rd.u16();
            if (info == uint16_t(InfoType::Export)) {
                e.size = rd.u64();
                e.flags = rd.u16();
                e.info = rd.at_end();
            } else if (info == uint16_t(InfoType::Description)) {
                e.description = rd.str(rd.remaining());
            } else if (info == uint16_t(InfoType::BlockSize)) {
                e.min_block = rd.u32();
                e.preferred_block = rd.u32();
                e.max_block = rd.u32();
            }
        }
        if (!m_structured)
            continue;
        if (auto r = send_option(Option::ListMetaContext, encode_meta_context_request(e.name, {})); !r)
            return std::unexpected(r.error());
        std::vector<std::string> contexts;
        while (true) {
            auto reply = read_option_reply(Option::ListMetaContext);
            if (!reply)
                return std::unexpected(reply.error());
            if (Rep(reply->type) == Rep::MetaContext) {
                ByteReader rd(reply->data);
                rd.u32();
                contexts.push_back(rd.str(rd.remaining()));
                continue;
            }
            if (Rep(reply->type) == Rep::Ack)
                e.contexts = std::move(contexts);
            break;
        }
    }
    return out;
}

} // namespace emu::storage::nbd

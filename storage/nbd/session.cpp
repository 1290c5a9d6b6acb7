// storage/nbd/session.cpp — the server side of the fixed newstyle handshake.
#include "storage/nbd/session.h"

#include "storage/endian.h"

#include <fmt/format.h>

namespace emu::storage::nbd {

void OutMessage::add_meta(std::span<const uint8_t> bytes)
{
    pieces.push_back({false, meta.size(), bytes.size()});
    meta.insert(meta.end(), bytes.begin(), bytes.end());
}

ServerSession::ServerSession(const SessionConfig& config, std::unique_ptr<Channel> channel, std::string peer)
    : m_config(config), m_channel(std::move(channel)), m_peer(std::move(peer))
{}

ServerSession::~ServerSession()
{
    stop_writer();
    std::lock_guard lock(m_export_mutex);
    if (m_attached)
        m_export->detach();
}

void ServerSession::shutdown()
{
    m_shutdown = true;
    m_channel->shutdown();
    std::lock_guard lock(m_queue_mutex);
    m_queue_cv.notify_all();
}

std::shared_ptr<Export> ServerSession::current_export() const
{
    std::lock_guard lock(m_export_mutex);
    return m_attached ? m_export : nullptr;
}

Result<void> ServerSession::run()
{
    if (m_config.handshake_timeout.count() > 0)
        m_channel->set_deadline(Channel::Clock::now() + m_config.handshake_timeout);
    auto ex = negotiate();
    if (!ex)
        return chain("handshake", ex.error());
    if (!*ex)
        return {}; // NBD_OPT_ABORT
    m_channel->set_deadline(std::nullopt);
    if (on_transmission)
        on_transmission(*this);
    return transmit();
}

bool ServerSession::bind(const std::shared_ptr<Export>& ex)
{
    std::lock_guard lock(m_export_mutex);
    if (!ex->attach())
        return false;
    m_export = ex;
    m_attached = true;
    return true;
}

uint16_t ServerSession::flags_for(const Export& ex) const
{
    return ex.transmission_flags(m_structured, m_config.multi_conn);
}

Result<void> ServerSession::send_rep(uint32_t option, Rep type, std::span<const uint8_t> payload)
{
    return m_channel->write(encode_option_reply(option, type, payload));
}

Result<void> ServerSession::send_error(uint32_t option, Rep type, const std::string& message)
{
    std::string_view text(message);
    text = text.substr(0, k_max_string);
    return send_rep(option, type, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
}

Result<std::shared_ptr<Export>> ServerSession::negotiate()
{
    if (auto r = m_channel->write(encode_greeting(k_flag_fixed_newstyle | k_flag_no_zeroes)); !r)
        return std::unexpected(r.error());
    uint8_t cf[4];
    if (auto r = m_channel->read(cf); !r)
        return std::unexpected(r.error());
    uint32_t client_flags = load_be32(cf);
    if (client_flags & ~(k_client_fixed_newstyle | k_client_no_zeroes))
        return fail(fmt::format("the client sent unknown flags 0x{:08x}", client_flags), EPROTO);
    m_fixed = client_flags & k_client_fixed_newstyle;
    m_no_zeroes = client_flags & k_client_no_zeroes;
    if (!m_fixed && m_config.tls)
        return fail("the client does not speak fixed newstyle, which TLS requires", EPROTO);

    while (true) {
        uint8_t hb[k_option_header_size];
        if (auto r = m_channel->read(hb); !r)
            return std::unexpected(r.error());
        auto h = decode_option_header(std::span<const uint8_t, k_option_header_size>(hb));
        if (!h)
            return std::unexpected(h.error());
        if (!m_fixed && h->option != uint32_t(Option::ExportName))
            return fail(fmt::format("the client sent {} without fixed newstyle", option_name(h->option)), EPROTO);
        if (h->length > k_max_option_length) {
            // EXPORT_NAME cannot fail politely; any other option is skipped unread.
            if (h->option == uint32_t(Option::ExportName))
                return fail(fmt::format("NBD_OPT_EXPORT_NAME of {} bytes", h->length), EPROTO);
            if (auto r = m_channel->discard(h->length); !r)
                return std::unexpected(r.error());
            if (auto r = send_error(
                    h->option, Rep::ErrTooBig,
                    fmt::format("option of {} bytes is too large (at most {})", h->length, k_max_option_length));
                !r)
                return std::unexpected(r.error());
            continue;
        }
        std::vector<uint8_t> data(h->length);
        if (auto r = m_channel->read(data); !r)
            return std::unexpected(r.error());
        bool done = false;
        auto ex = handle_option(h->option, data, done);
        if (!ex || done)
            return ex;
    }
}

Result<std::shared_ptr<Export>> ServerSession::handle_option(uint32_t option, std::vector<uint8_t>& data, bool& done)
{
    const Option opt = Option(option);
    auto step = [](Result<void> r) -> Result<std::shared_ptr<Export>> {
        if (!r)
            return std::unexpected(r.error());
        return nullptr;
    };
    if (opt == Option::Abort) {
        done = true;
        (void)send_rep(option, Rep::Ack); // the client may already be gone
        return nullptr;
    }
    if (m_config.shutting_down) {
        if (opt == Option::ExportName)
            return fail("NBD_OPT_EXPORT_NAME while the server shuts down", ESHUTDOWN);
        return step(send_error(option, Rep::ErrShutdown, "the server is shutting down"));
    }
    if (m_config.tls && !m_channel->tls_active() && opt != Option::StartTls) {
        // FORCEDTLS: nothing but STARTTLS (and ABORT) before TLS.
        if (opt == Option::ExportName)
            return fail("NBD_OPT_EXPORT_NAME without TLS on a server that requires TLS", EACCES);
        return step(send_error(option, Rep::ErrTlsReqd, "TLS is required: send NBD_OPT_STARTTLS first"));
    }
    switch (opt) {
    case Option::ExportName: {
        done = true;
        return handle_export_name(data);
    }
    case Option::Info:
    case Option::Go: {
        auto ex = handle_info(option, data);
        if (ex && *ex)
            done = opt == Option::Go;
        return opt == Option::Go ? ex : step(ex ? Result<void>() : std::unexpected(ex.error()));
    }
    case Option::List: return step(handle_list(option, data));
    case Option::StartTls: return step(handle_starttls(option, data));
    case Option::StructuredReply:
        if (!data.empty())
            return step(send_error(option, Rep::ErrInvalid, "NBD_OPT_STRUCTURED_REPLY takes no data"));
        m_structured = true;
        return step(send_rep(option, Rep::Ack));
    case Option::ListMetaContext:
    case Option::SetMetaContext: return step(handle_meta_context(option, data));
    default: break;
    }
    return step(send_error(option, Rep::ErrUnsup, fmt::format("option {} is not supported", option)));
}

Result<std::shared_ptr<Export>> ServerSession::handle_export_name(const std::vector<uint8_t>& data)
{
    std::string name(data.begin(), data.end());
    if (!valid_string(name))
        return fail("NBD_OPT_EXPORT_NAME with an invalid name", EPROTO);
    auto ex = m_config.exports->find(name);
    if (!ex)
        return fail(fmt::format("the client asked for export '{}', which does not exist", name), ENOENT);
    // Bound before the reply: once the client may send requests, the export
    // counts it (a safe removal fails from then on).
    if (!bind(ex))
        return fail(fmt::format("export '{}' is being removed", name), ESHUTDOWN);
    m_flags = flags_for(*ex);
    ByteWriter w;
    w.u64(ex->size()).u16(m_flags);
    if (!m_no_zeroes)
        w.data().resize(w.data().size() + k_export_name_zeroes, 0);
    if (auto r = m_channel->write(w.data()); !r)
        return std::unexpected(r.error());
    if (m_meta_export != name)
        m_meta_selected = false;
    return ex;
}

Result<std::shared_ptr<Export>> ServerSession::handle_info(uint32_t option, const std::vector<uint8_t>& data)
{
    auto req = parse_info_request(data);
    if (!req) {
        if (auto r = send_error(option, Rep::ErrInvalid, req.error().message); !r)
            return std::unexpected(r.error());
        return nullptr;
    }
    auto ex = m_config.exports->find(req->name);
    if (!ex) {
        if (auto r = send_error(option, Rep::ErrUnknown, fmt::format("export '{}' not present", req->name)); !r)
            return std::unexpected(r.error());
        return nullptr;
    }
    const uint16_t flags = flags_for(*ex);
    if (auto r = send_rep(option, Rep::Info, encode_info_export(ex->size(), flags)); !r)
        return std::unexpected(r.error());
    for (uint16_t type : req->requests) {
        Result<void> r;
        if (type == uint16_t(InfoType::Name))
            r = send_rep(option, Rep::Info, encode_info_string(InfoType::Name, ex->name()));
        else if (type == uint16_t(InfoType::Description) && !ex->description().empty())
            r = send_rep(option, Rep::Info, encode_info_string(InfoType::Description, ex->description()));
        if (!r)
            return std::unexpected(r.error());
    }
    // Block sizes are always sent: any alignment, 4 KiB preferred, 32 MiB at most.
    if (auto r = send_rep(option, Rep::Info, encode_info_block_size(1, k_preferred_block, k_max_payload)); !r)
        return std::unexpected(r.error());
    if (Option(option) == Option::Go && !bind(ex)) {
        if (auto r = send_error(option, Rep::ErrShutdown, fmt::format("export '{}' is being removed", ex->name())); !r)
            return std::unexpected(r.error());
        return nullptr;
    }
    if (auto r = send_rep(option, Rep::Ack); !r)
        return std::unexpected(r.error());
    if (Option(option) != Option::Go)
        return ex;
    m_flags = flags;
    if (m_meta_export != req->name)
        m_meta_selected = false;
    return ex;
}

Result<void> ServerSession::handle_list(uint32_t option, const std::vector<uint8_t>& data)
{
    if (!data.empty())
        return send_error(option, Rep::ErrInvalid, "NBD_OPT_LIST takes no data");
    for (const auto& ex : m_config.exports->list()) {
        ByteWriter w;
        w.u32(uint32_t(ex->name().size())).str(ex->name()).str(ex->description());
        if (auto r = send_rep(option, Rep::Server, w.data()); !r)
            return r;
    }
    return send_rep(option, Rep::Ack);
}

Result<void> ServerSession::handle_starttls(uint32_t option, const std::vector<uint8_t>& data)
{
    if (!data.empty())
        return send_error(option, Rep::ErrInvalid, "NBD_OPT_STARTTLS takes no data");
    if (m_channel->tls_active())
        return send_error(option, Rep::ErrInvalid, "TLS is already active");
    if (!m_config.tls)
        return send_error(option, Rep::ErrPolicy, "TLS is not configured on this server");
    if (auto r = send_rep(option, Rep::Ack); !r)
        return r;
    if (auto r = m_channel->start_tls(*m_config.tls); !r)
        return r; // too late for an error reply: the session ends
    // Nothing negotiated in plaintext survives the upgrade.
    m_structured = false;
    m_meta_selected = false;
    m_meta_export.clear();
    return {};
}

Result<void> ServerSession::handle_meta_context(uint32_t option, const std::vector<uint8_t>& data)
{
    const bool set = Option(option) == Option::SetMetaContext;
    if (set) {
        m_meta_selected = false; // replaced even when the option fails
        m_meta_export.clear();
    }
    if (!m_structured)
        return send_error(option, Rep::ErrInvalid, "meta contexts need structured replies first");
    auto req = parse_meta_context_request(data);
    if (!req) {
        Rep type = req.error().err == E2BIG ? Rep::ErrTooBig : Rep::ErrInvalid;
        return send_error(option, type, req.error().message);
    }
    if (!m_config.exports->find(req->name))
        return send_error(option, Rep::ErrUnknown, fmt::format("export '{}' not present", req->name));
    bool match = false;
    if (req->queries.empty()) {
        match = !set; // listing everything; selecting nothing
    } else {
        for (const auto& q : req->queries) {
            if (q.find(':') == std::string::npos)
                return send_error(option, Rep::ErrInvalid, fmt::format("query '{}' has no namespace", q));
            if (q == k_base_allocation || (!set && q == "base:"))
                match = true;
        }
    }
    if (match) {
        ByteWriter w;
        w.u32(set ? k_meta_id : 0).str(k_base_allocation);
        if (auto r = send_rep(option, Rep::MetaContext, w.data()); !r)
            return r;
        if (set) {
            m_meta_selected = true;
            m_meta_export = req->name;
        }
    }
    return send_rep(option, Rep::Ack);
}

} // namespace emu::storage::nbd

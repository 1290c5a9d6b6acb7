#include "daemon/sessions.h"

#include "common/log.h"
#include "daemon/daemon.h"
#include "daemon/vm.h"
#include "protocol/hmp/hmp.h"

namespace emu::daemon {

namespace {
// A human monitor line longer than this is refused, not buffered.
constexpr size_t k_max_hmp_line = 4096;
} // namespace

// --- QMP -------------------------------------------------------------------------

QmpSession::QmpSession(Daemon& daemon, Vm* vm, bool pretty) : m_daemon(daemon), m_vm(vm), m_pretty(pretty) {}

void QmpSession::on_open()
{
    (m_vm ? m_vm->events() : m_daemon.events()).subscribe(this);
    reply(qmp::greeting(m_daemon.dispatcher().schema().version()));
}

void QmpSession::on_close() { (m_vm ? m_vm->events() : m_daemon.events()).unsubscribe(this); }

void QmpSession::deliver(const std::string& encoded)
{
    if (m_negotiated)
        send(encoded);
}

void QmpSession::reply(const nlohmann::json& message)
{
    if (m_pretty)
        send(message.dump(4, ' ', false, nlohmann::json::error_handler_t::replace) + "\r\n");
    else
        send(qmp::encode(message));
}

void QmpSession::on_data(std::string_view bytes)
{
    for (auto& message : m_framer.feed(bytes)) {
        if (closing())
            return;
        handle(message);
    }
    if (m_framer.broken())
        close();
}

void QmpSession::handle(const qmp::Framer::Message& message)
{
    std::optional<nlohmann::json> id;
    auto request = qmp::parse_request(message, id);
    if (!request) {
        reply(qmp::error_message(request.error(), id));
        return;
    }
    if (request->execute == "qmp_capabilities") {
        // As QEMU: ill-typed arguments are reported even after negotiation.
        auto& schema = m_daemon.dispatcher().schema();
        const qmp::CommandDef* def = schema.command("qmp_capabilities", qmp::Scope::Vm);
        if (auto ok = schema.validate_args(*def, request->arguments); !ok) {
            reply(qmp::error_message(ok.error(), id));
            return;
        }
        if (m_negotiated) {
            reply(qmp::error_message({qmp::ErrorClass::CommandNotFound,
                                      "Capabilities negotiation is already complete, command ignored"},
                                     id));
            return;
        }
        for (auto& cap : request->arguments.value("enable", nlohmann::json::array())) {
            reply(qmp::error_message({qmp::ErrorClass::GenericError,
                                      "Capability '" + cap.get<std::string>() + "' not available"},
                                     id));
            return;
        }
        m_negotiated = true;
        reply(qmp::return_message(nlohmann::json::object(), id));
        return;
    }
    if (!m_negotiated) {
        reply(qmp::error_message(
            {qmp::ErrorClass::CommandNotFound, "Expecting capabilities negotiation with 'qmp_capabilities'"}, id));
        return;
    }
    Context ctx{m_daemon, m_vm ? qmp::Scope::Vm : qmp::Scope::Daemon, m_vm};
    auto result = m_daemon.dispatcher().execute(ctx, request->execute, request->arguments);
    reply(result ? qmp::return_message(std::move(*result), id) : qmp::error_message(result.error(), id));
}

// --- HMP -------------------------------------------------------------------------

HmpSession::HmpSession(Daemon& daemon, Vm* vm) : m_daemon(daemon), m_vm(vm) {}

void HmpSession::on_open()
{
    std::string banner = hmp::banner(m_daemon.dispatcher().schema().version());
    send(banner.substr(0, banner.size() - 1) + "\r\n" + std::string(hmp::k_prompt));
}

void HmpSession::on_close() {}

void HmpSession::on_data(std::string_view bytes)
{
    for (char c : bytes) {
        if (closing())
            return;
        if (c == '\r')
            continue;
        if (c != '\n') {
            if (m_line.size() >= k_max_hmp_line)
                m_discarding = true;
            else
                m_line.push_back(c);
            continue;
        }
        std::string output;
        if (m_discarding) {
            output = "Error: command line longer than " + std::to_string(k_max_hmp_line) + " bytes\n";
        } else {
            Vm* vm = m_vm;
            Daemon& daemon = m_daemon;
            output = hmp::run(m_line, [&](const std::string& command, const nlohmann::json& args) {
                Context ctx{daemon, qmp::Scope::Vm, vm};
                return daemon.dispatcher().execute(ctx, command, args);
            });
        }
        m_line.clear();
        m_discarding = false;
        std::string crlf;
        for (char o : output) {
            if (o == '\n')
                crlf += "\r\n";
            else
                crlf.push_back(o);
        }
        send(crlf + std::string(hmp::k_prompt));
    }
}

// --- console ---------------------------------------------------------------------

void ConsoleSession::on_open() { m_vm->console_attach(this); }

void ConsoleSession::on_data(std::string_view bytes) { m_vm->console_input(bytes); }

void ConsoleSession::on_close() { m_vm->console_detach(this); }

// --- events ----------------------------------------------------------------------

void EventHub::emit(const std::string& name, const nlohmann::json& data)
{
    auto& schema = qmp::Schema::builtin();
    const qmp::EventDef* def = schema.event(name);
    if (!def) {
        log_error("event {} is not declared in the schema", name);
        abort();
    }
    if (auto ok = schema.check_members(def->data, data, name); !ok) {
        log_error("event {} does not match the schema: {}", name, ok.error().desc);
        abort();
    }
    std::string encoded = qmp::encode(qmp::event_message(name, data));
    for (QmpSession* s : std::set<QmpSession*>(m_sessions))
        s->deliver(encoded);
}

} // namespace emu::daemon

#include "daemon/dispatcher.h"

#include "common/log.h"

#include <cstdlib>

namespace emu::daemon {

void Dispatcher::add(const std::string& name, Handler handler)
{
    bool declared = false;
    for (auto& c : m_schema.all_commands())
        declared |= c.name == name;
    if (!declared) {
        log_error("handler for '{}' has no schema entry", name);
        abort(); // a program bug: the schema is the single source
    }
    m_handlers[name] = std::move(handler);
}

std::vector<std::string> Dispatcher::mismatches() const
{
    std::vector<std::string> out;
    for (auto& c : m_schema.all_commands())
        if (c.name != "qmp_capabilities" && !m_handlers.count(c.name))
            out.push_back(c.name + " (no handler)");
    return out;
}

qmp::Result<json> Dispatcher::execute(Context& ctx, const std::string& name, const json& args) const
{
    const qmp::CommandDef* def = m_schema.command(name, ctx.scope);
    auto handler = m_handlers.find(name);
    if (!def || handler == m_handlers.end())
        return qmp::fail("The command " + name + " has not been found", qmp::ErrorClass::CommandNotFound);
    if (auto ok = m_schema.validate_args(*def, args); !ok)
        return std::unexpected(ok.error());
    auto result = handler->second(ctx, args);
    if (result && m_check_returns) {
        auto ok = def->returns ? m_schema.check_value(*def->returns, *result, "return")
                               : (result->is_object() && result->empty()
                                      ? qmp::Result<void>{}
                                      : qmp::fail("returns a value but declares none"));
        if (!ok) {
            log_error("{}: reply does not match the schema: {}", name, ok.error().desc);
            abort();
        }
    }
    return result;
}

} // namespace emu::daemon

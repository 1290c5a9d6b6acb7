// daemon/dispatcher.h — QMP command dispatch, driven by the schema.
//
// Handlers are plain functions registered by command name. The dispatcher
// rejects unknown commands and ill-typed arguments before any handler runs,
// and (with --check-returns, used by the tests) checks every return value
// against the schema.
#pragma once

#include "protocol/qmp/schema.h"

#include <functional>
#include <map>
#include <string>

namespace emu::daemon {

using json = nlohmann::json;
class Daemon;
class Vm;

struct Context {
    Daemon& daemon;
    qmp::Scope scope;
    Vm* vm = nullptr; // the VM addressed (VM scope only)
};

using Handler = std::function<qmp::Result<json>(Context& ctx, const json& args)>;

class Dispatcher {
public:
    explicit Dispatcher(const qmp::Schema& schema) : m_schema(schema) {}

    void add(const std::string& name, Handler handler);
    qmp::Result<json> execute(Context& ctx, const std::string& name, const json& args) const;
    // Schema commands without a handler, and handlers without a schema entry.
    std::vector<std::string> mismatches() const;
    void set_check_returns(bool on) { m_check_returns = on; }
    bool check_returns() const { return m_check_returns; }
    const qmp::Schema& schema() const { return m_schema; }

private:
    const qmp::Schema& m_schema;
    std::map<std::string, Handler, std::less<>> m_handlers;
    bool m_check_returns = false;
};

// Registration, one function per group of commands (daemon/commands_*.cpp).
void register_common_commands(Dispatcher& d);
void register_vm_commands(Dispatcher& d);
void register_daemon_commands(Dispatcher& d);
void register_chardev_commands(Dispatcher& d);
void register_block_commands(Dispatcher& d);
void register_nbd_commands(Dispatcher& d);
void register_object_commands(Dispatcher& d);
void register_block_op_commands(Dispatcher& d);

} // namespace emu::daemon

// protocol/qmp/schema.h — the QMP schema, declared once in schema.json.
//
// The schema is the single source for argument validation, the replies of
// query-commands / query-events / query-qmp-schema, and docs/qmp.md.
#pragma once

#include "protocol/qmp/error.h"

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace emu::qmp {

using json = nlohmann::json;

// Which endpoint a command or event lives on.
enum class Scope { Vm, Daemon };

struct TypeRef {
    std::string name; // builtin (str, int, number, bool, any, null, size) or declared type
    bool array = false;
};

struct Member {
    std::string name;
    bool optional = false;
    TypeRef type;
    std::string doc;
};

struct TypeDef {
    std::string name;
    std::string doc;
    bool is_enum = false;
    std::vector<Member> members;     // objects
    std::vector<std::string> values; // enums
};

struct CommandDef {
    std::string name;
    std::string doc;
    bool in_vm = false;
    bool in_daemon = false;
    std::vector<Member> args;
    std::optional<TypeRef> returns; // absent: returns {}
};

struct EventDef {
    std::string name;
    std::string doc;
    bool in_vm = false;
    bool in_daemon = false;
    std::vector<Member> data;
};

class Schema {
public:
    // The schema compiled into the binary (protocol/qmp/schema.json).
    static const Schema& builtin();
    // Parses and cross-checks a schema document (every referenced type exists).
    static std::expected<Schema, std::string> parse(const json& doc);

    const CommandDef* command(std::string_view name, Scope scope) const;
    const EventDef* event(std::string_view name) const;
    const TypeDef* type(std::string_view name) const;
    std::vector<const CommandDef*> commands(Scope scope) const;
    std::vector<const EventDef*> events(Scope scope) const;
    const std::vector<CommandDef>& all_commands() const { return m_commands; }
    const json& version() const { return m_version; }

    // Checks a command's arguments (an object) against its declaration, with
    // QEMU's messages: "Parameter 'x' is missing", "Parameter 'x' is
    // unexpected", "Invalid parameter type for 'x', expected: string".
    Result<void> validate_args(const CommandDef& cmd, const json& args) const;
    // Checks any value against a type; 'path' names the value in messages.
    Result<void> check_value(const TypeRef& type, const json& value, const std::string& path) const;
    Result<void> check_members(const std::vector<Member>& members, const json& object,
                               const std::string& path) const;

    // The reply of query-qmp-schema for one endpoint, in QEMU's SchemaInfo form.
    json introspect(Scope scope) const;
    // The reference manual, docs/qmp.md.
    std::string markdown() const;

private:
    json m_version;
    std::string m_about;
    std::vector<TypeDef> m_types;
    std::vector<CommandDef> m_commands;
    std::vector<EventDef> m_events;
};

} // namespace emu::qmp

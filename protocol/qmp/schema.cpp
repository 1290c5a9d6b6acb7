#include "protocol/qmp/schema.h"

#include <algorithm>
#include <cstdlib>
#include <cstdio>
#include <map>
#include <set>

namespace emu::qmp {

extern const char* const k_schema_json; // generated from schema.json (schema_data.cpp)

const char* error_class_name(ErrorClass cls)
{
    switch (cls) {
    case ErrorClass::GenericError:
        return "GenericError";
    case ErrorClass::CommandNotFound:
        return "CommandNotFound";
    case ErrorClass::DeviceNotActive:
        return "DeviceNotActive";
    case ErrorClass::DeviceNotFound:
        return "DeviceNotFound";
    case ErrorClass::KVMMissingCap:
        return "KVMMissingCap";
    }
    return "GenericError";
}

namespace {

constexpr std::string_view k_builtins[] = {"str", "int", "number", "bool", "any", "null", "size"};

bool is_builtin(std::string_view name)
{
    return std::find(std::begin(k_builtins), std::end(k_builtins), name) != std::end(k_builtins);
}

// JSON type names as QEMU's input visitor spells them in "expected: …".
const char* json_type_word(std::string_view builtin)
{
    if (builtin == "str")
        return "string";
    if (builtin == "int" || builtin == "size")
        return "integer";
    if (builtin == "number")
        return "number";
    if (builtin == "bool")
        return "boolean";
    if (builtin == "null")
        return "null";
    return "value";
}

std::expected<TypeRef, std::string> parse_type_ref(const json& spec)
{
    if (spec.is_string())
        return TypeRef{spec.get<std::string>(), false};
    if (spec.is_array() && spec.size() == 1 && spec[0].is_string())
        return TypeRef{spec[0].get<std::string>(), true};
    return std::unexpected("bad type reference " + spec.dump());
}

std::expected<std::vector<Member>, std::string> parse_members(const json& spec, const std::string& owner)
{
    std::vector<Member> out;
    if (spec.is_null())
        return out;
    if (!spec.is_object())
        return std::unexpected(owner + ": members must be an object");
    for (auto& [key, value] : spec.items()) {
        Member m;
        m.optional = !key.empty() && key[0] == '*';
        m.name = m.optional ? key.substr(1) : key;
        const json& type_spec = value.is_object() ? value.value("type", json()) : value;
        auto type = parse_type_ref(type_spec);
        if (!type)
            return std::unexpected(owner + "." + m.name + ": " + type.error());
        m.type = *type;
        if (value.is_object())
            m.doc = value.value("doc", "");
        out.push_back(std::move(m));
    }
    return out;
}

void scope_flags(const json& item, bool& in_vm, bool& in_daemon)
{
    std::string scope = item.value("scope", "vm");
    in_vm = scope == "vm" || scope == "all";
    in_daemon = scope == "daemon" || scope == "all";
}

} // namespace

std::expected<Schema, std::string> Schema::parse(const json& doc)
{
    Schema s;
    s.m_version = doc.value("version", json::object());
    s.m_about = doc.value("about", "");
    for (auto& t : doc.value("types", json::array())) {
        TypeDef def;
        def.name = t.value("name", "");
        def.doc = t.value("doc", "");
        if (t.contains("enum")) {
            def.is_enum = true;
            for (auto& v : t["enum"])
                def.values.push_back(v.get<std::string>());
        } else {
            auto members = parse_members(t.value("members", json::object()), def.name);
            if (!members)
                return std::unexpected(members.error());
            def.members = std::move(*members);
        }
        s.m_types.push_back(std::move(def));
    }
    for (auto& c : doc.value("commands", json::array())) {
        CommandDef def;
        def.name = c.value("name", "");
        def.doc = c.value("doc", "");
        scope_flags(c, def.in_vm, def.in_daemon);
        auto args = parse_members(c.value("args", json::object()), def.name);
        if (!args)
            return std::unexpected(args.error());
        def.args = std::move(*args);
        if (c.contains("returns")) {
            auto ret = parse_type_ref(c["returns"]);
            if (!ret)
                return std::unexpected(def.name + ": " + ret.error());
            def.returns = *ret;
        }
        s.m_commands.push_back(std::move(def));
    }
    for (auto& e : doc.value("events", json::array())) {
        EventDef def;
        def.name = e.value("name", "");
        def.doc = e.value("doc", "");
        scope_flags(e, def.in_vm, def.in_daemon);
        auto data = parse_members(e.value("data", json::object()), def.name);
        if (!data)
            return std::unexpected(data.error());
        def.data = std::move(*data);
        s.m_events.push_back(std::move(def));
    }

    // Cross-check: names are unique and every reference resolves.
    std::set<std::string> names;
    for (auto& t : s.m_types)
        if (!names.insert(t.name).second || is_builtin(t.name))
            return std::unexpected("type " + t.name + " is declared twice or shadows a builtin");
    auto resolves = [&](const TypeRef& ref) { return is_builtin(ref.name) || names.count(ref.name); };
    auto check_list = [&](const std::vector<Member>& members, const std::string& owner) -> std::string {
        for (auto& m : members)
            if (!resolves(m.type))
                return owner + "." + m.name + ": unknown type " + m.type.name;
        return {};
    };
    for (auto& t : s.m_types)
        if (auto err = check_list(t.members, t.name); !err.empty())
            return std::unexpected(err);
    std::set<std::string> command_names;
    for (auto& c : s.m_commands) {
        if (!command_names.insert(c.name).second)
            return std::unexpected("command " + c.name + " is declared twice");
        if (auto err = check_list(c.args, c.name); !err.empty())
            return std::unexpected(err);
        if (c.returns && !resolves(*c.returns))
            return std::unexpected(c.name + ": unknown return type " + c.returns->name);
    }
    for (auto& e : s.m_events)
        if (auto err = check_list(e.data, e.name); !err.empty())
            return std::unexpected(err);
    return s;
}

const Schema& Schema::builtin()
{
    static const Schema schema = [] {
        auto parsed = Schema::parse(json::parse(k_schema_json));
        if (!parsed) {
            // The compiled-in schema is part of the program: a bad one is a bug.
            fprintf(stderr, "emud: built-in QMP schema is invalid: %s\n", parsed.error().c_str());
            abort();
        }
        return std::move(*parsed);
    }();
    return schema;
}

const CommandDef* Schema::command(std::string_view name, Scope scope) const
{
    for (auto& c : m_commands)
        if (c.name == name && (scope == Scope::Vm ? c.in_vm : c.in_daemon))
            return &c;
    return nullptr;
}

const EventDef* Schema::event(std::string_view name) const
{
    for (auto& e : m_events)
        if (e.name == name)
            return &e;
    return nullptr;
}

const TypeDef* Schema::type(std::string_view name) const
{
    for (auto& t : m_types)
        if (t.name == name)
            return &t;
    return nullptr;
}

std::vector<const CommandDef*> Schema::commands(Scope scope) const
{
    std::vector<const CommandDef*> out;
    for (auto& c : m_commands)
        if (scope == Scope::Vm ? c.in_vm : c.in_daemon)
            out.push_back(&c);
    return out;
}

std::vector<const EventDef*> Schema::events(Scope scope) const
{
    std::vector<const EventDef*> out;
    for (auto& e : m_events)
        if (scope == Scope::Vm ? e.in_vm : e.in_daemon)
            out.push_back(&e);
    return out;
}

Result<void> Schema::validate_args(const CommandDef& cmd, const json& args) const
{
    return check_members(cmd.args, args, "");
}

Result<void> Schema::check_members(const std::vector<Member>& members, const json& object,
                                   const std::string& path) const
{
    auto full = [&](const std::string& name) { return path.empty() ? name : path + "." + name; };
    if (!object.is_object())
        return fail("Invalid parameter type for '" + (path.empty() ? std::string("arguments") : path) +
                    "', expected: object");
    for (auto& [key, value] : object.items()) {
        auto it = std::find_if(members.begin(), members.end(), [&](const Member& m) { return m.name == key; });
        if (it == members.end())
            return fail("Parameter '" + full(key) + "' is unexpected");
    }
    for (auto& m : members) {
        auto it = object.find(m.name);
        if (it == object.end()) {
            if (!m.optional)
                return fail("Parameter '" + full(m.name) + "' is missing");
            continue;
        }
        if (auto r = check_value(m.type, *it, full(m.name)); !r)
            return r;
    }
    return {};
}

Result<void> Schema::check_value(const TypeRef& type, const json& value, const std::string& path) const
{
    if (type.array) {
        if (!value.is_array())
            return fail("Invalid parameter type for '" + path + "', expected: array");
        TypeRef element{type.name, false};
        for (size_t i = 0; i < value.size(); i++)
            if (auto r = check_value(element, value[i], path + "[" + std::to_string(i) + "]"); !r)
                return r;
        return {};
    }
    const std::string& n = type.name;
    bool ok = true;
    if (n == "any")
        ok = true;
    else if (n == "str")
        ok = value.is_string();
    else if (n == "int")
        ok = value.is_number_integer();
    else if (n == "size")
        ok = value.is_number_unsigned() || (value.is_number_integer() && value.get<int64_t>() >= 0);
    else if (n == "number")
        ok = value.is_number();
    else if (n == "bool")
        ok = value.is_boolean();
    else if (n == "null")
        ok = value.is_null();
    else {
        const TypeDef* def = this->type(n);
        if (!def)
            return fail("Parameter '" + path + "' has undeclared type " + n);
        if (def->is_enum) {
            if (!value.is_string())
                return fail("Invalid parameter type for '" + path + "', expected: string");
            auto v = value.get<std::string>();
            if (std::find(def->values.begin(), def->values.end(), v) == def->values.end())
                return fail("Parameter '" + path + "' does not accept value '" + v + "'");
            return {};
        }
        return check_members(def->members, value, path);
    }
    if (!ok)
        return fail("Invalid parameter type for '" + path + "', expected: " + json_type_word(n));
    return {};
}

// --- introspection ----------------------------------------------------------

namespace {

// Builds QEMU's SchemaInfo list. As QEMU does, declared type names are
// replaced by numbers: clients must not depend on type names.
class Introspector {
public:
    explicit Introspector(const Schema& schema) : m_schema(schema) {}

    json run(Scope scope)
    {
        // "0" is the empty object: the argument type of argument-less commands.
        m_names["{}"] = "0";
        m_out.push_back({{"name", "0"}, {"meta-type", "object"}, {"members", json::array()}});
        for (auto* c : m_schema.commands(scope)) {
            json entry = {{"name", c->name}, {"meta-type", "command"}};
            entry["arg-type"] = members_type(c->name + ":args", c->args);
            entry["ret-type"] = c->returns ? ref(*c->returns) : "0";
            m_out.push_back(entry);
        }
        for (auto* e : m_schema.events(scope)) {
            json entry = {{"name", e->name}, {"meta-type", "event"}};
            entry["arg-type"] = members_type(e->name + ":data", e->data);
            m_out.push_back(entry);
        }
        return m_out;
    }

private:
    std::string next_name() { return std::to_string(m_counter++); }

    std::string members_type(const std::string& key, const std::vector<Member>& members)
    {
        if (members.empty())
            return "0";
        std::string name = next_name();
        m_names[key] = name;
        json info = {{"name", name}, {"meta-type", "object"}};
        info["members"] = member_list(members);
        m_out.push_back(info);
        return name;
    }

    json member_list(const std::vector<Member>& members)
    {
        json list = json::array();
        for (auto& m : members) {
            json item = {{"name", m.name}, {"type", ref(m.type)}};
            if (m.optional)
                item["default"] = nullptr;
            list.push_back(item);
        }
        return list;
    }

    std::string ref(const TypeRef& type)
    {
        if (type.array) {
            std::string element = ref(TypeRef{type.name, false});
            std::string name = "[" + element + "]";
            if (m_names.emplace("[]" + element, name).second)
                m_out.push_back({{"name", name}, {"meta-type", "array"}, {"element-type", element}});
            return name;
        }
        if (is_builtin(type.name)) {
            std::string name = type.name == "size" ? "size" : type.name;
            if (m_names.emplace("builtin:" + name, name).second) {
                static const std::map<std::string, std::string> json_types = {
                    {"str", "string"}, {"int", "int"},   {"size", "int"}, {"number", "number"},
                    {"bool", "boolean"}, {"any", "value"}, {"null", "null"}};
                m_out.push_back({{"name", name}, {"meta-type", "builtin"}, {"json-type", json_types.at(name)}});
            }
            return name;
        }
        auto found = m_names.find("type:" + type.name);
        if (found != m_names.end())
            return found->second;
        const TypeDef* def = m_schema.type(type.name);
        std::string name = next_name();
        m_names["type:" + type.name] = name;
        if (def->is_enum) {
            json members = json::array();
            for (auto& v : def->values)
                members.push_back({{"name", v}});
            m_out.push_back({{"name", name}, {"meta-type", "enum"}, {"values", def->values}, {"members", members}});
        } else {
            // Reserve the slot first: member types may refer back to this one.
            size_t slot = m_out.size();
            m_out.push_back(json());
            json info = {{"name", name}, {"meta-type", "object"}};
            info["members"] = member_list(def->members);
            m_out[slot] = info;
        }
        return name;
    }

    const Schema& m_schema;
    std::map<std::string, std::string> m_names;
    json m_out = json::array();
    int m_counter = 1;
};

std::string type_text(const TypeRef& t)
{
    std::string base = t.name;
    if (!is_builtin(t.name))
        base = "[" + t.name + "](#" + [&] {
            std::string anchor = "type-" + t.name;
            std::transform(anchor.begin(), anchor.end(), anchor.begin(), ::tolower);
            return anchor;
        }() + ")";
    return t.array ? "array of " + base : base;
}

void members_table(std::string& out, const std::vector<Member>& members, const char* heading)
{
    if (members.empty())
        return;
    out += std::string("\n| ") + heading + " | type | required | description |\n|---|---|---|---|\n";
    for (auto& m : members)
        out += "| `" + m.name + "` | " + type_text(m.type) + " | " + (m.optional ? "no" : "yes") + " | " +
               m.doc + " |\n";
}

std::string scope_text(bool vm, bool daemon)
{
    if (vm && daemon)
        return "VM and daemon endpoints";
    return vm ? "VM endpoint" : "daemon endpoint";
}

} // namespace

json Schema::introspect(Scope scope) const { return Introspector(*this).run(scope); }

std::string Schema::markdown() const
{
    std::string out = "# QMP reference\n\n"
                      "<!-- Generated from protocol/qmp/schema.json by emud-schema-doc; do not edit. -->\n\n";
    out += m_about + "\n\n";
    out += "Each VM has its own QMP endpoint that speaks plain QEMU QMP (the *VM endpoint*); the daemon's "
           "control socket (the *daemon endpoint*) manages VMs. Vendor commands and events carry the "
           "`__org.emud_` prefix, as the QMP specification asks of downstream extensions.\n\n";
    out += "## Commands\n";
    for (auto& c : m_commands) {
        out += "\n### `" + c.name + "`\n\n" + c.doc + "\n\n*Available on:* " + scope_text(c.in_vm, c.in_daemon) +
               ".\n";
        members_table(out, c.args, "argument");
        out += "\n*Returns:* " + (c.returns ? type_text(*c.returns) : std::string("an empty object")) + "\n";
    }
    out += "\n## Events\n";
    for (auto& e : m_events) {
        out += "\n### `" + e.name + "`\n\n" + e.doc + "\n\n*Emitted on:* " + scope_text(e.in_vm, e.in_daemon) +
               ".\n";
        members_table(out, e.data, "data member");
    }
    out += "\n## Types\n";
    for (auto& t : m_types) {
        std::string anchor = "type-" + t.name;
        std::transform(anchor.begin(), anchor.end(), anchor.begin(), ::tolower);
        out += "\n### <a id=\"" + anchor + "\"></a>`" + t.name + "`\n\n" + t.doc + "\n";
        if (t.is_enum) {
            out += "\nValues:";
            for (auto& v : t.values)
                out += " `" + v + "`";
            out += "\n";
        } else {
            members_table(out, t.members, "member");
        }
    }
    return out;
}

} // namespace emu::qmp

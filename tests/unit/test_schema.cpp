// Unit tests: schema parsing, validation, introspection (protocol/qmp/schema).
#include "protocol/qmp/schema.h"

#include <doctest/doctest.h>
#include <set>

using namespace emu::qmp;

namespace {
const Schema& test_schema()
{
    static Schema s = *Schema::parse(json::parse(R"({
      "types": [
        {"name": "Color", "enum": ["red", "green"]},
        {"name": "Inner", "members": {"n": "int", "*c": "Color"}},
        {"name": "Outer", "members": {"name": "str", "*inner": "Inner", "*list": ["Inner"], "*sz": "size",
                                      "*any": "any", "*f": "number", "*b": "bool"}}
      ],
      "commands": [
        {"name": "do-it", "args": {"o": "Outer", "*flag": "bool"}, "returns": ["str"], "scope": "all"},
        {"name": "vm-only", "scope": "vm"}
      ],
      "events": [{"name": "EV", "data": {"c": "Color"}}]
    })"));
    return s;
}

std::string error_of(const json& args)
{
    auto& s = test_schema();
    auto r = s.validate_args(*s.command("do-it", Scope::Vm), args);
    return r ? std::string() : r.error().desc;
}
} // namespace

TEST_CASE("argument validation reports QEMU's messages with full paths")
{
    CHECK(error_of({{"o", {{"name", "x"}}}}) == "");
    CHECK(error_of(json::object()) == "Parameter 'o' is missing");
    CHECK(error_of({{"o", {{"name", "x"}}}, {"zap", 1}}) == "Parameter 'zap' is unexpected");
    CHECK(error_of({{"o", {{"name", 1}}}}) == "Invalid parameter type for 'o.name', expected: string");
    CHECK(error_of({{"o", {{"name", "x"}, {"inner", {{"n", "1"}}}}}}) ==
          "Invalid parameter type for 'o.inner.n', expected: integer");
    CHECK(error_of({{"o", {{"name", "x"}, {"inner", {{"n", 1}, {"c", "blue"}}}}}}) ==
          "Parameter 'o.inner.c' does not accept value 'blue'");
    CHECK(error_of({{"o", {{"name", "x"}, {"list", {{{"n", 1}}, {{"x", 1}}}}}}}) ==
          "Parameter 'o.list[1].x' is unexpected");
    CHECK(error_of({{"o", {{"name", "x"}, {"list", {{"n", 1}}}}}}) ==
          "Invalid parameter type for 'o.list', expected: array");
    CHECK(error_of({{"o", {{"name", "x"}, {"sz", -1}}}}) == "Invalid parameter type for 'o.sz', expected: integer");
    CHECK(error_of({{"o", {{"name", "x"}, {"f", 1}, {"b", true}, {"any", {1, 2}}}}}) == "");
    CHECK(error_of({{"o", {{"name", "x"}, {"b", 1}}}}) == "Invalid parameter type for 'o.b', expected: boolean");
    CHECK(error_of({{"o", "x"}}) == "Invalid parameter type for 'o', expected: object");
}

TEST_CASE("scopes select the commands of an endpoint")
{
    auto& s = test_schema();
    CHECK(s.command("vm-only", Scope::Vm) != nullptr);
    CHECK(s.command("vm-only", Scope::Daemon) == nullptr);
    CHECK(s.command("do-it", Scope::Daemon) != nullptr);
    CHECK(s.commands(Scope::Daemon).size() == 1);
}

TEST_CASE("bad schemas are rejected")
{
    CHECK_FALSE(Schema::parse(json::parse(R"({"commands":[{"name":"a","args":{"x":"Nope"}}]})")).has_value());
    CHECK_FALSE(Schema::parse(json::parse(R"({"commands":[{"name":"a"},{"name":"a"}]})")).has_value());
    CHECK_FALSE(Schema::parse(json::parse(R"({"types":[{"name":"str","members":{}}]})")).has_value());
}

TEST_CASE("introspection is self-consistent and masks type names")
{
    for (auto* schema : {&test_schema(), &Schema::builtin()}) {
        for (Scope scope : {Scope::Vm, Scope::Daemon}) {
            json info = schema->introspect(scope);
            std::set<std::string> names;
            for (auto& e : info)
                CHECK(names.insert(e["name"].get<std::string>()).second);
            for (auto& e : info) {
                std::string meta = e["meta-type"];
                std::vector<std::string> refs;
                if (meta == "command")
                    refs = {e["arg-type"], e["ret-type"]};
                else if (meta == "event")
                    refs = {e["arg-type"]};
                else if (meta == "array")
                    refs = {e["element-type"]};
                else if (meta == "object")
                    for (auto& m : e["members"])
                        refs.push_back(m["type"]);
                for (auto& r : refs)
                    CHECK_MESSAGE(names.count(r), (e["name"].get<std::string>() + " -> " + r));
                if (meta == "object" || meta == "enum")
                    CHECK(std::isdigit(static_cast<unsigned char>(e["name"].get<std::string>()[0])));
            }
        }
    }
}

TEST_CASE("the built-in schema declares what the issue requires")
{
    auto& s = Schema::builtin();
    for (const char* c : {"qmp_capabilities", "query-version", "query-commands", "query-qmp-schema", "query-events",
                          "query-name", "query-uuid", "query-status", "query-kvm", "query-target", "query-machines",
                          "query-cpus-fast", "stop", "cont", "system_reset", "system_powerdown", "quit",
                          "human-monitor-command"})
        CHECK_MESSAGE(s.command(c, Scope::Vm) != nullptr, c);
    for (const char* e : {"STOP", "RESUME", "RESET", "SHUTDOWN", "POWERDOWN"})
        CHECK_MESSAGE(s.event(e) != nullptr, e);
    // Vendor names carry the downstream prefix.
    for (auto& c : s.all_commands())
        if (c.in_daemon && !c.in_vm)
            CHECK(c.name.rfind("__org.emud_", 0) == 0);
    std::string md = s.markdown();
    for (auto& c : s.all_commands())
        CHECK(md.find("### `" + c.name + "`") != std::string::npos);
}

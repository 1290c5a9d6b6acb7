// Unit tests: QMP framing and request envelopes (protocol/qmp/wire).
#include "protocol/qmp/wire.h"

#include <doctest/doctest.h>

using namespace emu::qmp;

namespace {
std::vector<std::string> texts(const std::vector<Framer::Message>& msgs)
{
    std::vector<std::string> out;
    for (auto& m : msgs)
        out.push_back(m.text);
    return out;
}

Result<Request> parse(const std::string& text, std::optional<json>& id)
{
    Framer f;
    auto msgs = f.feed(text + "\n");
    REQUIRE(msgs.size() == 1);
    return parse_request(msgs[0], id);
}
} // namespace

TEST_CASE("framer splits and joins messages like a stream")
{
    Framer f;
    CHECK(texts(f.feed(R"({"a":1}{"b":[2,{"c":3}]})")) == std::vector<std::string>{R"({"a":1})", R"({"b":[2,{"c":3}]})"});
    CHECK(f.feed(R"({"execute":)").empty());
    CHECK(f.pending() > 0);
    CHECK(texts(f.feed(" \"x\"}\r\n")) == std::vector<std::string>{R"({"execute": "x"})"});
    // Braces and escaped quotes inside strings do not count.
    CHECK(texts(f.feed(R"({"s":"}\"{"})")) == std::vector<std::string>{R"({"s":"}\"{"})"});
    // Scalars end at whitespace or a delimiter; strays are reported alone.
    CHECK(texts(f.feed("42 true\n")) == std::vector<std::string>{"42", "true"});
    CHECK(texts(f.feed("}")) == std::vector<std::string>{"}"});
    CHECK(texts(f.feed(R"("top")")) == std::vector<std::string>{R"("top")"});
    CHECK_FALSE(f.broken());
}

TEST_CASE("framer caps size and depth")
{
    Framer small(64, 4);
    auto msgs = small.feed("{\"a\":\"" + std::string(100, 'x'));
    REQUIRE(msgs.size() == 1);
    CHECK(msgs[0].error);
    CHECK(msgs[0].error_desc.find("exceeds 64 bytes") != std::string::npos);
    CHECK(small.broken());
    CHECK(small.feed("{}").empty());

    // Too deep: reported, skipped to its end, and the stream goes on (as QEMU).
    Framer shallow(1 << 20, 4);
    msgs = shallow.feed("[[[[[\"]]]]]\"]]]]]{\"a\":1}");
    REQUIRE(msgs.size() == 2);
    CHECK(msgs[0].error);
    CHECK(msgs[0].error_desc == "JSON nesting depth limit exceeded");
    CHECK(msgs[1].text == "{\"a\":1}");
    CHECK_FALSE(shallow.broken());
}

TEST_CASE("request envelope errors match QEMU's")
{
    std::optional<json> id;
    CHECK(parse(R"({"execute":"x","id":[1]})", id).has_value());
    CHECK(*id == json::array({1}));

    struct Case {
        const char* text;
        const char* desc;
    } cases[] = {
        {"[]", "QMP input must be a JSON object"},
        {"{}", "QMP input lacks member 'execute'"},
        {R"({"execute":[]})", "QMP input member 'execute' must be a string"},
        {R"({"execute":"x","arguments":1})", "QMP input member 'arguments' must be an object"},
        {R"({"execute":"x","foo":1})", "QMP input member 'foo' is unexpected"},
    };
    for (auto& c : cases) {
        id.reset();
        auto r = parse(c.text, id);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error().desc == c.desc);
        CHECK(r.error().cls == ErrorClass::GenericError);
    }
    id.reset();
    auto r = parse(R"({"execute": 5, "id": "keep"})", id);
    CHECK_FALSE(r.has_value());
    CHECK(*id == "keep");
    auto bad = parse(R"({"execute": })", id);
    CHECK_FALSE(bad.has_value());
}

TEST_CASE("messages are encoded as QEMU sends them")
{
    CHECK(encode(return_message(json::object(), json("i"))) == "{\"id\":\"i\",\"return\":{}}\r\n");
    auto err = error_message({ErrorClass::CommandNotFound, "nope"}, std::nullopt);
    CHECK(err == json::parse(R"({"error":{"class":"CommandNotFound","desc":"nope"}})"));
    auto ev = event_message("STOP", json::object());
    CHECK(ev["event"] == "STOP");
    CHECK_FALSE(ev.contains("data"));
    CHECK(ev["timestamp"]["seconds"].is_number_integer());
    CHECK(ev["timestamp"]["microseconds"].get<int64_t>() < 1000000);
    auto g = greeting(json{{"qemu", {{"major", 2}}}, {"package", ""}});
    CHECK(g["QMP"]["capabilities"] == json::array());
    // Invalid UTF-8 does not throw.
    CHECK_NOTHROW(encode(json(std::string("\xff"))));
}

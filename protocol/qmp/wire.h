// protocol/qmp/wire.h — QMP on the wire: framing a byte stream into JSON
// messages, checking a request's envelope, and encoding replies and events.
#pragma once

#include "protocol/qmp/error.h"

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace emu::qmp {

using json = nlohmann::json;

// Splits a byte stream into top-level JSON values, as QEMU's streaming parser
// does: objects and arrays may span lines and several may share a line.
class Framer {
public:
    struct Message {
        std::string text;   // one complete top-level value (may be invalid JSON)
        bool error = false; // framing failed (oversize, too deep, stray byte)
        std::string error_desc;
    };

    explicit Framer(size_t max_message = 8u << 20, int max_depth = 1024)
        : m_max_message(max_message), m_max_depth(max_depth)
    {
    }

    // Appends bytes; returns the messages that became complete.
    std::vector<Message> feed(std::string_view bytes);
    // True after an oversize message: the caller should reply and close the
    // connection. (Too deep a message is skipped and the stream goes on, as QEMU.)
    bool broken() const { return m_broken; }
    size_t pending() const { return m_buf.size(); }

private:
    enum class State { Idle, Nested, String, StringEscape, Scalar, TopString, TopStringEscape, Discard, DiscardString,
                       DiscardEscape };
    void finish(std::vector<Message>& out);

    std::string m_buf;
    State m_state = State::Idle;
    State m_string_return = State::Nested;
    int m_depth = 0;
    size_t m_max_message;
    int m_max_depth;
    bool m_broken = false;
};

struct Request {
    std::string execute;
    json arguments = json::object();
    std::optional<json> id;
};

// Parses one framed message into a request. On failure, 'id' is still filled
// when the message had one, so the error reply can carry it.
Result<Request> parse_request(const Framer::Message& message, std::optional<json>& id);

json greeting(const json& version);
json return_message(json value, const std::optional<json>& id);
json error_message(const Error& err, const std::optional<json>& id);
json event_message(const std::string& name, const json& data);
// One message as QEMU sends it: compact JSON followed by CRLF.
std::string encode(const json& message);

} // namespace emu::qmp

#include "protocol/qmp/wire.h"

#include <sys/time.h>

namespace emu::qmp {

namespace {
bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
bool ends_scalar(char c) { return is_space(c) || c == '{' || c == '}' || c == '[' || c == ']' || c == ',' || c == ':'; }
} // namespace

void Framer::finish(std::vector<Message>& out)
{
    out.push_back(Message{std::move(m_buf), false, {}});
    m_buf.clear();
    m_state = State::Idle;
    m_depth = 0;
}

std::vector<Framer::Message> Framer::feed(std::string_view bytes)
{
    std::vector<Message> out;
    if (m_broken)
        return out;
    for (size_t i = 0; i < bytes.size(); i++) {
        char c = bytes[i];
        switch (m_state) {
        case State::Idle:
            if (is_space(c))
                continue;
            m_buf.push_back(c);
            if (c == '{' || c == '[') {
                m_state = State::Nested;
                m_depth = 1;
            } else if (c == '"') {
                m_state = State::TopString;
            } else if (c == '}' || c == ']' || c == ',' || c == ':') {
                // A stray structural character: report it alone, as QEMU does.
                finish(out);
            } else {
                m_state = State::Scalar;
            }
            break;
        case State::Scalar:
            if (ends_scalar(c)) {
                finish(out);
                i--; // reconsider this byte in the idle state
                continue;
            }
            m_buf.push_back(c);
            break;
        case State::TopString:
        case State::String:
            m_buf.push_back(c);
            if (c == '\\') {
                m_string_return = m_state;
                m_state = m_state == State::String ? State::StringEscape : State::TopStringEscape;
            } else if (c == '"') {
                if (m_state == State::TopString)
                    finish(out);
                else
                    m_state = State::Nested;
            }
            break;
        case State::StringEscape:
        case State::TopStringEscape:
            m_buf.push_back(c);
            m_state = m_string_return;
            break;
        case State::Discard:
            if (c == '"')
                m_state = State::DiscardString;
            else if (c == '{' || c == '[')
                m_depth++;
            else if ((c == '}' || c == ']') && --m_depth == 0)
                m_state = State::Idle;
            continue;
        case State::DiscardString:
            if (c == '\\')
                m_state = State::DiscardEscape;
            else if (c == '"')
                m_state = State::Discard;
            continue;
        case State::DiscardEscape:
            m_state = State::DiscardString;
            continue;
        case State::Nested:
            m_buf.push_back(c);
            if (c == '"') {
                m_state = State::String;
            } else if (c == '{' || c == '[') {
                if (++m_depth > m_max_depth) {
                    // Report it, skip the rest of this value, and carry on.
                    out.push_back(Message{{}, true, "JSON nesting depth limit exceeded"});
                    m_buf.clear();
                    m_state = State::Discard;
                    continue;
                }
            } else if (c == '}' || c == ']') {
                if (--m_depth == 0)
                    finish(out);
            }
            break;
        }
        if (m_buf.size() > m_max_message) {
            out.push_back(Message{{}, true,
                                  "JSON parse error, message exceeds " + std::to_string(m_max_message) + " bytes"});
            m_buf.clear();
            m_broken = true;
            return out;
        }
    }
    // A scalar at the end of a chunk may continue in the next one; only a
    // delimiter ends it. A bare number followed by a newline ends above.
    return out;
}

Result<Request> parse_request(const Framer::Message& message, std::optional<json>& id)
{
    if (message.error)
        return fail(message.error_desc);
    json doc = json::parse(message.text, nullptr, false);
    if (doc.is_discarded())
        return fail("JSON parse error, invalid JSON '" + message.text.substr(0, 64) + "'");
    if (!doc.is_object())
        return fail("QMP input must be a JSON object");
    if (auto it = doc.find("id"); it != doc.end())
        id = *it;
    Request req;
    bool has_execute = false;
    for (auto& [key, value] : doc.items()) {
        if (key == "execute") {
            if (!value.is_string())
                return fail("QMP input member 'execute' must be a string");
            req.execute = value.get<std::string>();
            has_execute = true;
        } else if (key == "arguments") {
            if (!value.is_object())
                return fail("QMP input member 'arguments' must be an object");
            req.arguments = value;
        } else if (key == "id") {
            req.id = value;
        } else if (key == "exec-oob") {
            return fail("QMP input member 'exec-oob' is unexpected: out-of-band execution is not enabled");
        } else {
            return fail("QMP input member '" + key + "' is unexpected");
        }
    }
    if (!has_execute)
        return fail("QMP input lacks member 'execute'");
    return req;
}

json greeting(const json& version)
{
    return {{"QMP", {{"version", version}, {"capabilities", json::array()}}}};
}

json return_message(json value, const std::optional<json>& id)
{
    json msg = {{"return", std::move(value)}};
    if (id)
        msg["id"] = *id;
    return msg;
}

json error_message(const Error& err, const std::optional<json>& id)
{
    json msg = {{"error", {{"class", error_class_name(err.cls)}, {"desc", err.desc}}}};
    if (id)
        msg["id"] = *id;
    return msg;
}

json event_message(const std::string& name, const json& data)
{
    struct timeval tv;
    gettimeofday(&tv, nullptr);
    json msg = {{"event", name}, {"timestamp", {{"seconds", int64_t(tv.tv_sec)}, {"microseconds", int64_t(tv.tv_usec)}}}};
    if (!data.is_null() && !(data.is_object() && data.empty()))
        msg["data"] = data;
    return msg;
}

std::string encode(const json& message)
{
    // Invalid UTF-8 from a guest or a client must not throw: replace it.
    return message.dump(-1, ' ', false, json::error_handler_t::replace) + "\r\n";
}

} // namespace emu::qmp

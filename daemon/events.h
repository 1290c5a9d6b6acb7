// daemon/events.h — QMP event fan-out: every QMP client of an endpoint
// (a VM's, or the daemon's) gets each event once it left negotiation mode.
#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>

namespace emu::daemon {

class QmpSession;

class EventHub {
public:
    void subscribe(QmpSession* s) { m_sessions.insert(s); }
    void unsubscribe(QmpSession* s) { m_sessions.erase(s); }
    void emit(const std::string& name, const nlohmann::json& data = nlohmann::json::object());
    size_t size() const { return m_sessions.size(); }

private:
    std::set<QmpSession*> m_sessions;
};

} // namespace emu::daemon

// daemon/sessions.h — the three kinds of client connection: QMP, HMP
// (the human monitor) and a VM's console stream.
#pragma once

#include "daemon/dispatcher.h"
#include "daemon/stream.h"
#include "protocol/qmp/wire.h"

#include <string>

namespace emu::daemon {

class Daemon;
class Vm;

// A QMP client: greeting, capabilities negotiation, then commands and events.
// With a VM it is that VM's endpoint; without one, the daemon's.
class QmpSession final : public Peer {
public:
    QmpSession(Daemon& daemon, Vm* vm, bool pretty = false);
    // Sends one event (already encoded) if the client is in command mode.
    void deliver(const std::string& encoded);

private:
    void on_open() override;
    void on_data(std::string_view bytes) override;
    void on_close() override;
    void handle(const qmp::Framer::Message& message);
    void reply(const nlohmann::json& message);

    Daemon& m_daemon;
    Vm* m_vm;
    bool m_pretty;
    bool m_negotiated = false;
    qmp::Framer m_framer;
};

// A human monitor client: a banner, a prompt, one command per line.
class HmpSession final : public Peer {
public:
    HmpSession(Daemon& daemon, Vm* vm);

private:
    void on_open() override;
    void on_data(std::string_view bytes) override;
    void on_close() override;

    Daemon& m_daemon;
    Vm* m_vm;
    std::string m_line;
    bool m_discarding = false; // the current line is over the cap
};

// A client attached to a VM's console: guest output to it, its keys to the guest.
class ConsoleSession final : public Peer {
public:
    explicit ConsoleSession(Vm* vm) : m_vm(vm) {}

private:
    void on_open() override;
    void on_data(std::string_view bytes) override;
    void on_close() override;

    Vm* m_vm;
};

} // namespace emu::daemon

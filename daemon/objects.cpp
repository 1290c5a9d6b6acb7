#include "daemon/objects.h"

#include <cctype>

namespace emu::daemon {

using nlohmann::json;

bool id_wellformed(const std::string& id)
{
    if (id.empty() || !std::isalpha(static_cast<unsigned char>(id[0])))
        return false;
    for (char c : id)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '_')
            return false;
    return true;
}

namespace {

// A property as QMP (JSON booleans) or the text forms (HMP, 2.10's props) give it.
qmp::Result<bool> bool_property(const json& v, const std::string& name)
{
    if (v.is_boolean())
        return v.get<bool>();
    if (v.is_string()) {
        std::string s = v.get<std::string>();
        if (s == "on" || s == "yes" || s == "true")
            return true;
        if (s == "off" || s == "no" || s == "false")
            return false;
    }
    return qmp::fail("Parameter '" + name + "' expects a boolean");
}

} // namespace

qmp::Result<void> Objects::add(const json& args)
{
    std::string type = args["qom-type"].get<std::string>();
    std::string id = args["id"].get<std::string>();
    if (type != "tls-creds-x509")
        return qmp::fail("object type '" + type + "' is not supported (supported: tls-creds-x509)");
    if (!id_wellformed(id))
        return qmp::fail("Parameter 'id' expects an identifier");
    if (m_tls.count(id))
        return qmp::fail("attempt to add duplicate property '" + id + "' to object (type 'container')");
    json props = args.value("props", json::object());
    if (!props.is_object())
        return qmp::fail("Invalid parameter type for 'props', expected: object");
    for (auto& [key, value] : args.items())
        if (key != "qom-type" && key != "id" && key != "props")
            props[key] = value;
    storage::nbd::TlsOptions options;
    options.endpoint = storage::nbd::TlsEndpoint::Client; // QEMU's default
    bool has_dir = false;
    for (auto& [key, value] : props.items()) {
        if (key == "dir") {
            if (!value.is_string())
                return qmp::fail("Invalid parameter type for 'dir', expected: string");
            options.dir = value.get<std::string>();
            has_dir = true;
        } else if (key == "endpoint") {
            std::string e = value.is_string() ? value.get<std::string>() : "";
            if (e != "server" && e != "client")
                return qmp::fail("Parameter 'endpoint' does not accept value '" + (value.is_string() ? e : value.dump()) +
                                 "'");
            options.endpoint = e == "server" ? storage::nbd::TlsEndpoint::Server : storage::nbd::TlsEndpoint::Client;
        } else if (key == "verify-peer") {
            auto v = bool_property(value, key);
            if (!v)
                return std::unexpected(v.error());
            options.verify_peer = *v;
        } else if (key == "loaded") {
            // Deprecated in QEMU and meaningless here: the object loads when added.
        } else {
            return qmp::fail("tls-creds-x509 property '" + key + "' is not supported (supported: dir, endpoint, "
                             "verify-peer)");
        }
    }
    if (!has_dir)
        return qmp::fail("tls-creds-x509 '" + id + "': Parameter 'dir' is missing");
    auto creds = storage::nbd::TlsCredentials::load(options);
    if (!creds)
        return qmp::fail("tls-creds-x509 '" + id + "': " + creds.error().message);
    m_tls.emplace(id, std::move(*creds));
    return {};
}

qmp::Result<void> Objects::del(const std::string& id)
{
    if (!m_tls.erase(id))
        return qmp::fail("object '" + id + "' not found");
    return {};
}

qmp::Result<std::shared_ptr<storage::nbd::TlsCredentials>> Objects::server_tls(const std::string& id) const
{
    auto it = m_tls.find(id);
    if (it == m_tls.end())
        return qmp::fail("No TLS credentials with id '" + id + "'");
    if (it->second->endpoint() != storage::nbd::TlsEndpoint::Server)
        return qmp::fail("Expected TLS credentials for a server endpoint");
    return it->second;
}

} // namespace emu::daemon

// storage/nbd/tls.h — x509 TLS credentials for NBD (OpenSSL), loaded from a
// directory with QEMU's tls-creds-x509 file names:
//   ca-cert.pem                       the CA that signs the peer's certificate
//   server-cert.pem, server-key.pem   a server's own certificate and key
//   client-cert.pem, client-key.pem   a client's own (optional) certificate
// A server with verify_peer asks for a client certificate signed by the CA
// and refuses clients without one; a client with verify_peer checks the
// server's certificate against the CA (and the host name it connected to).
#pragma once

#include "storage/error.h"

#include <memory>
#include <string>

namespace emu::storage::nbd {

enum class TlsEndpoint { Server, Client };

struct TlsOptions {
    std::string dir;
    TlsEndpoint endpoint = TlsEndpoint::Server;
    bool verify_peer = true; // QEMU's default
};

class TlsCredentials {
public:
    static Result<std::shared_ptr<TlsCredentials>> load(const TlsOptions& options);
    ~TlsCredentials();
    TlsCredentials(const TlsCredentials&) = delete;
    TlsCredentials& operator=(const TlsCredentials&) = delete;

    TlsEndpoint endpoint() const { return m_options.endpoint; }
    bool verify_peer() const { return m_options.verify_peer; }
    const std::string& dir() const { return m_options.dir; }
    void* context() const { return m_ctx; } // SSL_CTX*

private:
    TlsCredentials(const TlsOptions& options, void* ctx) : m_options(options), m_ctx(ctx) {}
    TlsOptions m_options;
    void* m_ctx;
};

// The last OpenSSL error of this thread as text (and clears the queue).
std::string tls_error_text();

} // namespace emu::storage::nbd

// storage/nbd/tls.cpp — OpenSSL credentials, and the TLS half of
// SocketChannel (the only file that includes OpenSSL).
#include "storage/nbd/tls.h"

#include "storage/nbd/channel.h"

#include <arpa/inet.h>
#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <mutex>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

namespace emu::storage::nbd {

std::string tls_error_text()
{
    unsigned long e = ERR_get_error();
    std::string text;
    while (e != 0) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!text.empty())
            text += "; ";
        text += buf;
        e = ERR_get_error();
    }
    return text.empty() ? std::string("unknown TLS error") : text;
}

namespace {

bool readable(const std::string& path)
{
    return access(path.c_str(), R_OK) == 0;
}

std::unexpected<Error> missing(const std::string& path)
{
    int err = errno;
    return fail(fmt::format("TLS credentials: cannot read '{}': {}", path, std::strerror(err)), err);
}

// A socket BIO whose writes never raise SIGPIPE (send with MSG_NOSIGNAL): the
// library cannot change the process's signal dispositions.
int bio_write(BIO* bio, const char* data, int len)
{
    int fd = int(reinterpret_cast<intptr_t>(BIO_get_data(bio)));
    BIO_clear_retry_flags(bio);
    ssize_t n = send(fd, data, size_t(len), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
        BIO_set_retry_write(bio);
    return int(n);
}

int bio_read(BIO* bio, char* data, int len)
{
    int fd = int(reinterpret_cast<intptr_t>(BIO_get_data(bio)));
    BIO_clear_retry_flags(bio);
    ssize_t n = recv(fd, data, size_t(len), 0);
    if (n < 0 && errno == EINTR)
        BIO_set_retry_read(bio);
    return int(n);
}

long bio_ctrl(BIO*, int cmd, long, void*)
{
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

int bio_create(BIO* bio)
{
    BIO_set_init(bio, 1);
    return 1;
}

BIO_METHOD* socket_method()
{
    static BIO_METHOD* method = [] {
        BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "emu-nbd socket");
        BIO_meth_set_write(m, bio_write);
        BIO_meth_set_read(m, bio_read);
        BIO_meth_set_ctrl(m, bio_ctrl);
        BIO_meth_set_create(m, bio_create);
        return m;
    }();
    return method;
}

} // namespace

Result<std::shared_ptr<TlsCredentials>> TlsCredentials::load(const TlsOptions& o)
{
    const bool server = o.endpoint == TlsEndpoint::Server;
    SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    if (!ctx)
        return fail("TLS credentials: cannot create a context: " + tls_error_text());
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> guard(ctx, SSL_CTX_free);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_AUTO_RETRY);

    const std::string ca = o.dir + "/ca-cert.pem";
    const std::string cert = o.dir + (server ? "/server-cert.pem" : "/client-cert.pem");
    const std::string key = o.dir + (server ? "/server-key.pem" : "/client-key.pem");
    if (server || (!o.dir.empty() && (readable(cert) || readable(key)))) {
        if (!readable(cert))
            return missing(cert);
        if (!readable(key))
            return missing(key);
        if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1)
            return fail(fmt::format("TLS credentials: cannot load certificate '{}': {}", cert, tls_error_text()));
        if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1)
            return fail(fmt::format("TLS credentials: cannot load private key '{}': {}", key, tls_error_text()));
        if (SSL_CTX_check_private_key(ctx) != 1)
            return fail(fmt::format("TLS credentials: '{}' does not match '{}': {}", key, cert, tls_error_text()));
    }
    if (o.verify_peer && !server && o.dir.empty()) {
        // No directory: the system's CA certificates vouch for the server.
        if (SSL_CTX_set_default_verify_paths(ctx) != 1)
            return fail("TLS credentials: cannot load the system's CA certificates: " + tls_error_text());
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    } else if (o.verify_peer) {
        if (!readable(ca))
            return missing(ca);
        if (SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr) != 1)
            return fail(fmt::format("TLS credentials: cannot load CA certificate '{}': {}", ca, tls_error_text()));
        int mode = SSL_VERIFY_PEER;
        if (server) {
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
            STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(ca.c_str());
            if (names)
                SSL_CTX_set_client_CA_list(ctx, names);
        }
        SSL_CTX_set_verify(ctx, mode, nullptr);
    } else {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
    }
    guard.release();
    return std::shared_ptr<TlsCredentials>(new TlsCredentials(o, ctx));
}

TlsCredentials::~TlsCredentials()
{
    SSL_CTX_free(static_cast<SSL_CTX*>(m_ctx));
}

// --- SocketChannel, TLS half ---------------------------------------------------

void tls_session_free(void* ssl)
{
    if (!ssl)
        return;
    SSL_free(static_cast<SSL*>(ssl));
}

void tls_session_close(void* ssl)
{
    if (ssl)
        SSL_shutdown(static_cast<SSL*>(ssl));
}

Result<void> SocketChannel::start_tls(const TlsCredentials& creds, const std::string& hostname)
{
    if (m_ssl)
        return fail("TLS is already active", EINVAL);
    if (auto r = apply_deadline(); !r)
        return r;
    SSL* ssl = SSL_new(static_cast<SSL_CTX*>(creds.context()));
    if (!ssl)
        return fail("cannot create a TLS session: " + tls_error_text());
    BIO* bio = BIO_new(socket_method());
    if (!bio) {
        SSL_free(ssl);
        return fail("cannot create a TLS session: " + tls_error_text());
    }
    BIO_set_data(bio, reinterpret_cast<void*>(intptr_t(m_fd)));
    SSL_set_bio(ssl, bio, bio);
    const bool server = creds.endpoint() == TlsEndpoint::Server;
    if (!server && creds.verify_peer() && !hostname.empty()) {
        X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
        unsigned char addr[16];
        bool is_ip =
            inet_pton(AF_INET, hostname.c_str(), addr) == 1 || inet_pton(AF_INET6, hostname.c_str(), addr) == 1;
        if (is_ip)
            X509_VERIFY_PARAM_set1_ip_asc(param, hostname.c_str());
        else
            X509_VERIFY_PARAM_set1_host(param, hostname.c_str(), 0);
        SSL_set_tlsext_host_name(ssl, hostname.c_str());
    }
    ERR_clear_error();
    errno = 0;
    int rc = server ? SSL_accept(ssl) : SSL_connect(ssl);
    if (rc != 1) {
        int err = errno;
        std::string why;
        long verify = SSL_get_verify_result(ssl);
        if (verify != X509_V_OK)
            why = fmt::format("certificate verification failed: {}", X509_verify_cert_error_string(verify));
        else if (ERR_peek_error() != 0)
            why = tls_error_text();
        else if (err == EAGAIN || err == EWOULDBLOCK)
            why = "timed out";
        else if (err != 0)
            why = std::strerror(err);
        else
            why = "the peer closed the connection";
        SSL_free(ssl);
        return fail("TLS handshake failed: " + why, EPROTO);
    }
    m_ssl = ssl;
    return {};
}

Result<void> SocketChannel::tls_read(std::span<uint8_t> buf)
{
    SSL* ssl = static_cast<SSL*>(m_ssl);
    size_t done = 0;
    while (done < buf.size()) {
        if (auto r = apply_deadline(); !r)
            return r;
        size_t got = 0;
        ERR_clear_error();
        errno = 0;
        int rc = SSL_read_ex(ssl, buf.data() + done, buf.size() - done, &got);
        if (rc == 1) {
            done += got;
            continue;
        }
        int e = SSL_get_error(ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            continue; // interrupted
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && errno == 0))
            return fail("connection closed by the peer", k_peer_closed);
        if (e == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK))
            return fail("timed out", ETIMEDOUT);
        if (e == SSL_ERROR_SYSCALL)
            return fail(fmt::format("TLS read failed: {}", std::strerror(errno)), errno);
        return fail("TLS read failed: " + tls_error_text(), EPROTO);
    }
    return {};
}

Result<void> SocketChannel::tls_write(std::span<const uint8_t> buf)
{
    SSL* ssl = static_cast<SSL*>(m_ssl);
    size_t done = 0;
    while (done < buf.size()) {
        if (auto r = apply_deadline(); !r)
            return r;
        size_t put = 0;
        ERR_clear_error();
        errno = 0;
        int rc = SSL_write_ex(ssl, buf.data() + done, buf.size() - done, &put);
        if (rc == 1) {
            done += put;
            continue;
        }
        int e = SSL_get_error(ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
            continue; // interrupted
        if (e == SSL_ERROR_SYSCALL && errno != 0)
            return fail(fmt::format("TLS write failed: {}", std::strerror(errno)), errno);
        if (e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL)
            return fail("connection closed by the peer", k_peer_closed);
        return fail("TLS write failed: " + tls_error_text(), EPROTO);
    }
    return {};
}

} // namespace emu::storage::nbd

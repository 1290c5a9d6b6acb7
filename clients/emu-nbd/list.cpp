// clients/emu-nbd/list.cpp — -L: the exports of an NBD server, in the
// layout qemu-nbd -L prints.
#include "clients/emu-nbd/emu_nbd.h"

#include "storage/nbd/client.h"
#include "storage/nbd/protocol.h"

#include <cstdio>
#include <fmt/format.h>

namespace emu::nbdtool {

namespace nbd = emu::storage::nbd;

namespace {

std::string flag_names(uint16_t flags)
{
    static const std::pair<uint16_t, const char*> names[] = {
        {nbd::k_read_only, "readonly"},
        {nbd::k_send_flush, "flush"},
        {nbd::k_send_fua, "fua"},
        {nbd::k_rotational, "rotational"},
        {nbd::k_send_trim, "trim"},
        {nbd::k_send_write_zeroes, "zeroes"},
        {nbd::k_send_df, "df"},
        {nbd::k_can_multi_conn, "multi"},
        {nbd::k_send_resize, "resize"},
        {nbd::k_send_cache, "cache"},
        {nbd::k_send_fast_zero, "fast-zero"},
    };
    std::string out;
    for (const auto& [bit, name] : names)
        if (flags & bit)
            out += fmt::format(" {}", name);
    return out;
}

} // namespace

int list_exports(const Options& o, const std::shared_ptr<nbd::TlsCredentials>&, const std::string& tls_dir)
{
    nbd::NbdTarget target;
    if (!o.socket.empty()) {
        target.address.is_unix = true;
        target.address.path = o.socket;
        target.name = "unix:" + o.socket;
    } else {
        target.address.host = o.bind == "0.0.0.0" ? "localhost" : o.bind;
        target.address.port = o.port;
        target.name = target.address.to_string();
    }
    if (!tls_dir.empty()) {
        target.tls = true;
        target.tls_creds_dir = tls_dir;
    }
    auto list = nbd::NbdClient::list(target);
    if (!list) {
        error(list.error().message);
        return 1;
    }
    std::printf("exports available: %zu\n", list->size());
    for (const auto& e : *list) {
        std::printf(" export: '%s'\n", e.name.c_str());
        if (!e.description.empty())
            std::printf("  description: %s\n", e.description.c_str());
        if (!e.info)
            continue;
        std::printf("  size:  %llu\n", (unsigned long long)e.size);
        std::printf("  flags: 0x%x (%s )\n", e.flags, flag_names(e.flags).c_str());
        std::printf("  min block: %u\n", e.min_block);
        std::printf("  opt block: %u\n", e.preferred_block);
        std::printf("  max block: %u\n", e.max_block);
        if (e.contexts) {
            std::printf("  available meta contexts: %zu\n", e.contexts->size());
            for (const auto& c : *e.contexts)
                std::printf("   %s\n", c.c_str());
        }
    }
    return 0;
}

} // namespace emu::nbdtool

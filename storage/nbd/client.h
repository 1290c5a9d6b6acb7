// storage/nbd/client.h — the NBD client: NbdClient speaks the protocol
// (fixed newstyle, STARTTLS, structured replies, base:allocation, NBD_OPT_GO
// with a fallback to NBD_OPT_EXPORT_NAME; one request at a time), NbdDriver
// is the `nbd` protocol driver that image names like nbd://host/export open
// (raw or qcow2 sit on top of it, as on a file).
//
// Every reply is checked: magic, cookie, chunk types and lengths, data and
// hole chunks inside the request and not overlapping, the whole range covered.
// A server that breaks the protocol gets the connection dropped, and every
// later request fails.
#pragma once

#include "storage/block_driver.h"
#include "storage/nbd/channel.h"
#include "storage/nbd/codec.h"
#include "storage/nbd/uri.h"

#include <memory>

namespace emu::storage::nbd {

struct ExportListing {
    std::string name;
    std::string description;
    uint64_t size = 0;
    uint16_t flags = 0;
    uint32_t min_block = 1, preferred_block = 4096, max_block = k_max_payload;
    bool info = false;                                // size and flags known (NBD_OPT_INFO answered)
    std::optional<std::vector<std::string>> contexts; // NBD_OPT_LIST_META_CONTEXT, when answered
};

class NbdClient {
public:
    // Connects and negotiates; errors name the target ("nbd://h:1/x: server
    // refused export 'x': No such export").
    static Result<std::unique_ptr<NbdClient>> connect(const NbdTarget& target);
    // NBD_OPT_LIST, then NBD_OPT_INFO and NBD_OPT_LIST_META_CONTEXT on each
    // export (with structured replies negotiated, as a client that goes on
    // would), then NBD_OPT_ABORT.
    static Result<std::vector<ExportListing>> list(const NbdTarget& target);
    ~NbdClient(); // sends NBD_CMD_DISC when the connection is sound

    uint64_t size() const { return m_size; }
    uint16_t flags() const { return m_flags; }
    bool read_only() const { return m_flags & k_read_only; }
    bool structured() const { return m_structured; }
    bool has_block_status() const { return m_meta_id.has_value(); }
    uint32_t max_block() const { return m_max_block; }
    const NbdTarget& target() const { return m_target; }

    Result<void> read(uint64_t offset, std::span<uint8_t> buf, bool df = false);
    Result<void> write(uint64_t offset, std::span<const uint8_t> buf, bool fua = false);
    Result<void> write_zeroes(uint64_t offset, uint32_t bytes, uint16_t flags);
    Result<void> trim(uint64_t offset, uint32_t bytes);
    Result<void> flush();
    Result<void> cache(uint64_t offset, uint32_t bytes);
    // base:allocation extents from offset (at least one on success).
    Result<std::vector<Extent>> block_status(uint64_t offset, uint32_t bytes, bool req_one = false);
    // Any request, for tests: sends it and returns the NBD error value of the reply.
    Result<uint32_t> raw_request(const Request& req, std::span<const uint8_t> payload = {});
    void disconnect();

private:
    explicit NbdClient(NbdTarget target) : m_target(std::move(target)) {}
    Result<void> open_channel();
    Result<void> handshake(bool list_only);
    Result<void> negotiate_export();
    Result<void> send_option(Option option, std::span<const uint8_t> payload = {});
    struct OptionReply {
        uint32_t type = 0;
        std::vector<uint8_t> data;
    };
    Result<OptionReply> read_option_reply(Option option);
    std::unexpected<Error> refused(std::string_view what, const OptionReply& reply) const;
    Result<std::vector<ExportListing>> list_exports();

    // One request and its whole reply. `read_buf`: where READ data goes;
    // `extents`: where BLOCK_STATUS extents go.
    Result<uint32_t> transact(const Request& req, std::span<const uint8_t> payload, std::span<uint8_t> read_buf,
                              std::vector<Extent>* extents);
    Result<uint32_t> read_structured(const Request& req, ReplyHeader first, std::span<uint8_t> read_buf,
                                     std::vector<Extent>* extents);
    std::unexpected<Error> broken(const std::string& why);
    Result<void> check_error(const Request& req, Result<uint32_t> r, std::string_view what);

    NbdTarget m_target;
    std::unique_ptr<Channel> m_channel;
    bool m_fixed = false;
    bool m_no_zeroes = false;
    bool m_structured = false;
    std::optional<uint32_t> m_meta_id;
    uint64_t m_size = 0;
    uint16_t m_flags = 0;
    uint32_t m_min_block = 1;
    uint32_t m_max_block = k_max_payload;
    uint64_t m_next_cookie = 1;
    bool m_broken = false;
    std::string m_last_error; // the server's message of the last error reply
};

class NbdDriver final : public BlockDriver {
public:
    static Result<std::unique_ptr<NbdDriver>> open(const std::string& name, bool read_only);

    std::string_view format_name() const override { return "nbd"; }
    const std::string& filename() const override { return m_name; }
    uint64_t size() const override { return m_client->size(); }
    bool read_only() const override { return m_read_only; }

    Result<void> read(uint64_t offset, std::span<uint8_t> buf) override;
    Result<void> write(uint64_t offset, std::span<const uint8_t> buf) override;
    Result<void> write_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap) override;
    Result<void> discard(uint64_t offset, uint64_t bytes) override;
    Result<void> flush() override;
    Result<BlockStatus> block_status(uint64_t offset, uint64_t bytes) override;
    Result<void> close() override;
    NbdClient& client() { return *m_client; }

private:
    NbdDriver(std::string name, std::unique_ptr<NbdClient> client, bool read_only)
        : m_name(std::move(name)), m_client(std::move(client)), m_read_only(read_only)
    {}
    Result<void> in_bounds(uint64_t offset, uint64_t bytes) const;
    Result<void> writable() const;

    std::string m_name;
    std::unique_ptr<NbdClient> m_client;
    bool m_read_only;
};

} // namespace emu::storage::nbd

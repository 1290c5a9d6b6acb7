// storage/nbd/export.h — what an NBD server serves: a named window of a
// BlockBackend (all of it, or from an offset), writable or not, and the table
// of exports a server's sessions look names up in. An export counts the
// sessions in transmission on it, so that removing it can wait for them.
#pragma once

#include "storage/backend.h"

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace emu::storage::nbd {

struct ExportOptions {
    uint64_t offset = 0;            // bytes of the backend before the export's first byte
    std::optional<uint64_t> size;   // default: the backend's size past `offset`
    std::optional<bool> multi_conn; // default: when the server takes more than one client
};

class Export {
public:
    static Result<std::shared_ptr<Export>> create(std::string name, std::string description,
                                                  std::shared_ptr<BlockBackend> backend, bool writable,
                                                  const ExportOptions& options = {});

    const std::string& name() const { return m_name; }
    const std::string& description() const { return m_description; }
    uint64_t size() const { return m_size; }
    bool writable() const { return m_writable; }
    BlockBackend& backend() { return *m_backend; }
    const std::shared_ptr<BlockBackend>& backend_ptr() const { return m_backend; }
    // NBD transmission flags for a session (structured replies negotiated or
    // not; does the server accept more than one client?).
    uint16_t transmission_flags(bool structured, bool server_multi_conn) const;

    // I/O at export offsets (the caller checked the bounds).
    Result<void> read(uint64_t offset, std::span<uint8_t> buf);
    Result<void> write(uint64_t offset, std::span<const uint8_t> buf);
    Result<void> write_zeroes(uint64_t offset, uint64_t bytes, bool may_unmap);
    Result<void> discard(uint64_t offset, uint64_t bytes);
    Result<void> flush();
    // The status of a prefix of [offset, offset+bytes) through the backing chain.
    Result<BlockStatus> status(uint64_t offset, uint64_t bytes);
    // Is the range inside the last run status() found stored as data? (Reads
    // then need no status query. A stale answer is harmless: the range is
    // read and sent as data, which is always correct.)
    bool known_data(uint64_t offset, uint64_t bytes) const;

    // Sessions in transmission on this export.
    bool attach(); // false once the export is being removed
    void detach();
    size_t sessions() const;
    // Refuses new sessions; then waits until the attached ones have ended.
    void retire();
    void unretire();
    void wait_idle();

private:
    Export() = default;
    void forget_data();
    std::string m_name;
    std::string m_description;
    std::shared_ptr<BlockBackend> m_backend;
    bool m_writable = false;
    uint64_t m_offset = 0;
    uint64_t m_size = 0;
    std::optional<bool> m_multi_conn;

    mutable std::mutex m_cache_mutex;
    uint64_t m_data_start = 0, m_data_end = 0;

    mutable std::mutex m_mutex;
    std::condition_variable m_idle;
    size_t m_sessions = 0;
    bool m_retired = false;
};

// The exports of one server, by name.
class ExportTable {
public:
    Result<void> add(std::shared_ptr<Export> ex);
    std::shared_ptr<Export> find(std::string_view name) const;
    std::vector<std::shared_ptr<Export>> list() const;
    std::shared_ptr<Export> remove(std::string_view name);

private:
    mutable std::mutex m_mutex;
    std::map<std::string, std::shared_ptr<Export>, std::less<>> m_exports;
};

} // namespace emu::storage::nbd

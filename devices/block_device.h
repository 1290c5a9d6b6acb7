// devices/block_device.h — what every disk device (virtio-blk, IDE) shares
// with the machine and the daemon: the drive it is given, its error policy,
// its statistics in query-blockstats' terms, and what query-block shows of it.
#pragma once

#include <cstdint>
#include <string>

namespace emu::storage {
class BlockBackend;
}

namespace emu::devices {

// werror/rerror: what a failed request does.
//   Report  the guest sees an I/O error;
//   Ignore  the guest sees success;
//   Stop    the request is parked and the VM stops (io-error) until `cont`;
//   Enospc  Stop when the host ran out of space, else Report.
enum class BlockErrorAction : uint8_t { Report, Ignore, Stop, Enospc };
const char* block_error_action_name(BlockErrorAction action);
// "report", "ignore", "stop", "enospc"; false if `name` is none of them.
bool parse_block_error_action(const std::string& name, BlockErrorAction& action);

struct BlockStats {
    uint64_t rd_bytes = 0, wr_bytes = 0, unmap_bytes = 0;
    uint64_t rd_operations = 0, wr_operations = 0, flush_operations = 0, unmap_operations = 0;
    uint64_t rd_total_time_ns = 0, wr_total_time_ns = 0, flush_total_time_ns = 0, unmap_total_time_ns = 0;
    uint64_t failed_rd_operations = 0, failed_wr_operations = 0, failed_flush_operations = 0,
             failed_unmap_operations = 0;
    uint64_t invalid_rd_operations = 0, invalid_wr_operations = 0, invalid_flush_operations = 0,
             invalid_unmap_operations = 0;
    uint64_t wr_highest_offset = 0; // bytes: the end of the furthest write
};

// A drive as the machine receives it from the daemon (-drive, -blockdev).
struct DriveConfig {
    storage::BlockBackend* backend = nullptr; // nullptr: an empty removable drive
    bool read_only = false;
    BlockErrorAction rerror = BlockErrorAction::Report;
    BlockErrorAction werror = BlockErrorAction::Enospc;
    std::string serial;
};

// One disk device as query-block and query-blockstats show it.
struct BlockDeviceInfo {
    std::string drive;     // the drive id (-drive id=, or the -blockdev node name)
    std::string qdev;      // the device's id, or its QOM path without one
    bool removable = false;
    bool locked = false;
    bool tray_open = false;
    bool has_tray = false;
    std::string io_status = "ok"; // "ok", "failed", "nospace"
    BlockStats stats;
};

// What a device reports up (MachineHost::block_io_error).
struct BlockIoError {
    std::string drive;
    std::string qdev;
    bool is_read = false;
    int error = 0;      // errno
    bool stopping = false;
    BlockErrorAction action = BlockErrorAction::Report;
};

} // namespace emu::devices

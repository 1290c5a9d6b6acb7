// daemon/block_nodes.h — a VM's block nodes beyond its -drive drives: the
// nodes blockdev-add and -blockdev create (QEMU's monitor-owned nodes), the
// blockdev option sets they come from, and the BlockDeviceInfo document a
// node shows in query-block and query-named-block-nodes.
//
// A node stands alone (it owns a BlockBackend, so that its driver stack has
// one lock) until something takes it: a device (-device …,drive=NODE), an
// external snapshot (blockdev-snapshot makes it a drive's active layer), or
// another node that names it as its `file` or `backing` child (the child is
// borrowed, storage/borrowed.h, and the node is busy while the parent lives).
#pragma once

#include "protocol/qmp/error.h"
#include "storage/backend.h"

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace emu::daemon {

struct BlockNode {
    std::string name;
    std::unique_ptr<storage::BlockBackend> backend; // while the node stands alone
    storage::BlockDriver* driver = nullptr;         // its top driver, wherever it lives now
    bool in_drive = false;                          // a device or a drive's chain took it
    std::string parent;                             // the node using it as a child ("" if none)
    std::string role;                               // "backing" or "file" in that parent
    std::vector<std::string> children;              // nodes it borrows
    storage::CacheMode cache = storage::CacheMode::Writeback;
    storage::DetectZeroes detect_zeroes = storage::DetectZeroes::Off;
    storage::DiscardMode discard = storage::DiscardMode::Ignore;
};

// How option sets find what they refer to.
struct NodeEnv {
    // A standalone node by name, or nullptr.
    std::function<BlockNode*(const std::string&)> find;
    // Why a new node name cannot be used ("" if it can).
    std::function<std::string(const std::string&)> name_conflict;
    // A fresh name for an unnamed inner node ("#block…").
    std::function<std::string()> auto_name;
};

// Options from -blockdev in QEMU's dotted key=value form arrive as strings
// (read-only=on, cache.direct=off): the booleans become booleans.
nlohmann::json normalize_blockdev_options(nlohmann::json options);

// Opens one blockdev option set (blockdev-add's arguments): drivers qcow2,
// raw, file and nbd; file as an inline option set or a node name; backing as
// a node name, null (none) or absent (the image's own backing file).
qmp::Result<std::unique_ptr<BlockNode>> open_blockdev(const nlohmann::json& options, const NodeEnv& env);

// QEMU's BlockDeviceInfo of the driver stack under `top`.
struct NodeView {
    storage::CacheMode cache = storage::CacheMode::Writeback;
    storage::DetectZeroes detect_zeroes = storage::DetectZeroes::Off;
    std::string file; // the name to show; the driver's file name if empty
};
nlohmann::json node_info(storage::BlockDriver& top, const NodeView& view);
// QEMU's SnapshotInfo of an internal snapshot.
nlohmann::json snapshot_info(const storage::SnapshotInfo& s);

// "Cannot find device=… nor node_name=…", QEMU's lookup failure.
qmp::Error not_found(const std::string& device, const std::string& node);

} // namespace emu::daemon

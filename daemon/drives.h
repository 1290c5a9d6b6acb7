// daemon/drives.h — a VM's drives: -drive option sets (and -hda…/-cdrom,
// which emuctl turns into -drive) parsed into DriveSpecs, opened into
// storage::BlockBackends that the VM owns and its disk devices use.
//
// Parsing (parse_drives) also adds the device a drive's interface implies,
// as QEMU's drive_new does: if=virtio → virtio-blk-pci,drive=ID. A drive
// with if=none waits for a -device that names it. Ids follow QEMU:
// "virtio0", "ide0-hd0", "ide1-cd0", "none0"; node names "#block100", ….
//
// Opening (Drive::open) applies the options: format (probed when absent),
// cache mode, aio, discard, detect-zeroes, read-only, and snapshot=on (a
// temporary qcow2 overlay in the VM's directory, deleted once open, so the
// writes vanish with the VM as QEMU's -snapshot does).
//
// A drive shares its backend: an NBD export of the drive holds it too (and
// the guest's requests and the clients' go through that one backend). A
// medium ejected under an export made by node name stays open until the
// export lets it go; the last owner closes it.
#pragma once

#include "devices/block_device.h"
#include "devices/machine.h"
#include "protocol/qmp/error.h"
#include "storage/backend.h"

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace emu::daemon {

struct DriveSpec {
    std::string id;        // query-block's "device"; "" for a -blockdev node a device uses
    std::string node_name; // the top node's name when opened (devices know the drive by it)
    std::string file;      // empty: a removable drive without medium
    std::string format;    // empty: probed
    std::string interface; // "ide", "virtio", "none"
    int index = -1, bus = -1, unit = -1;
    bool cdrom = false;
    storage::CacheMode cache = storage::CacheMode::Writeback;
    storage::DetectZeroes detect_zeroes = storage::DetectZeroes::Off;
    storage::DiscardMode discard = storage::DiscardMode::Ignore;
    bool read_only = false;
    bool snapshot = false;
    devices::BlockErrorAction werror = devices::BlockErrorAction::Enospc;
    devices::BlockErrorAction rerror = devices::BlockErrorAction::Report;
    std::string serial;
};

// The drives of a config ("drives": -drive option sets as objects of
// strings); `snapshot` is -snapshot (every drive gets snapshot=on). Adds the
// implied devices to `devices`.
qmp::Result<std::vector<DriveSpec>> parse_drives(const nlohmann::json& config, bool snapshot,
                                                 std::vector<devices::DeviceConfig>& devices);

class Drive {
public:
    // Opens the image (and, for snapshot=on, a temporary overlay in `dir`
    // named after the VM).
    static qmp::Result<std::unique_ptr<Drive>> open(DriveSpec spec, const std::string& dir, const std::string& vm);
    ~Drive();

    // A node from -blockdev that a device names (-device …,drive=NODE): the
    // drive has no id of its own (query-block shows device "").
    static std::unique_ptr<Drive> adopt(DriveSpec spec, std::unique_ptr<storage::BlockBackend> backend);

    const DriveSpec& spec() const { return m_spec; }
    // The name the devices know this drive by (its id, or the node's name).
    const std::string& key() const { return m_spec.id.empty() ? m_spec.node_name : m_spec.id; }
    // The node name of the active layer now (an external snapshot or a
    // commit replaces it).
    std::string root_node_name() const;
    // After a graph change: file and format follow the new active layer.
    void root_changed();
    storage::BlockBackend* backend() const { return m_backend.get(); }
    const std::shared_ptr<storage::BlockBackend>& shared_backend() const { return m_backend; }
    devices::DriveConfig device_config() const;
    // The image's format and size as query-block shows them ("inserted").
    nlohmann::json inserted() const;
    // Closes the image (writes back metadata, marks it clean; logs failures),
    // or only lets it go while an export still holds it.
    void close();

    // Removable drives: the medium goes (eject), or another one is opened
    // with this drive's options and put in its place.
    void remove_medium();
    qmp::Result<std::unique_ptr<storage::BlockBackend>> open_medium(const std::string& file,
                                                                   const std::string& format) const;
    void set_medium(std::unique_ptr<storage::BlockBackend> medium, const std::string& file,
                    const std::string& format);

private:
    explicit Drive(DriveSpec spec) : m_spec(std::move(spec)) {}
    DriveSpec m_spec;
    std::shared_ptr<storage::BlockBackend> m_backend;
};

} // namespace emu::daemon

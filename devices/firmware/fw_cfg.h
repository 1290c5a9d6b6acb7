// devices/firmware/fw_cfg.h — QEMU's firmware configuration interface on the
// PC's I/O ports, for SeaBIOS and the Linux qemu_fw_cfg driver.
//
// Ports: selector 0x510 (16-bit write: selects an item and rewinds it), data
// 0x511 (8-bit read: the next byte of the item, 0 past its end; writes
// ignored), DMA address 0x514 (64-bit big-endian: the high half written as a
// 32-bit value at 0x514, then the low half at 0x518, which starts the
// transfer; or one 64-bit write at 0x514). Reads of 0x514-0x51b give the
// DMA signature "QEMU CFG".
// DMA: the guest's control structure (big-endian u32 control, u32 length,
// u64 address) is read from guest memory through the AddressSpace given at
// construction. Control bits: select (with the item in bits 31:16), skip,
// read, write. Reads copy from the item's current offset and zero-fill past
// its end; skip advances; a write (no item is writable) and any guest
// address that cannot be read or written set the error bit. The control
// word is written back as 0 or the error bit. A control structure at an
// address that cannot be read is logged and dropped (there is nowhere to
// report the error). No allocation depends on guest values.
// Items: signature "QEMU", ID (traditional | DMA), UUID, RAM_SIZE,
// NOGRAPHIC, NB_CPUS, MAX_CPUS, FILE_DIR (big-endian count, then 64-byte
// entries: size, select, reserved, name) and the files from select 0x20 on,
// sorted by name (selectors are given out again on every add_file, so files
// are added before the guest starts).
#pragma once

#include "devices/boot/e820.h"
#include "devices/state.h"
#include "engine/memory/region.h"

#include <array>
#include <cstdint>
#include <expected>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace emu::mem {
class AddressSpace;
}

namespace emu::devices {

struct FwCfgError {
    std::string message; // "fw_cfg: file 'etc/e820' already exists"
};

struct FwCfgState {
    uint16_t selector = 0;
    uint32_t offset = 0;
    uint32_t dma_high = 0; // the high half of the DMA address, as written
    static std::span<const FieldDesc> fields();
};

class FwCfg {
public:
    static constexpr uint16_t kPort = 0x510;
    static constexpr uint16_t kDmaPort = 0x514;
    static constexpr uint16_t kSignature = 0x00, kId = 0x01, kUuid = 0x02, kRamSize = 0x03, kNoGraphic = 0x04,
                              kNbCpus = 0x05, kMaxCpus = 0x0f, kFileDir = 0x19, kFileFirst = 0x20;
    static constexpr uint16_t kWriteChannel = 0x4000, kArchLocal = 0x8000, kEntryMask = 0x3fff;
    static constexpr uint32_t kDmaError = 0x01, kDmaRead = 0x02, kDmaSkip = 0x04, kDmaSelect = 0x08,
                              kDmaWrite = 0x10;
    static constexpr size_t kMaxNameLength = 55; // 56 bytes with the NUL
    static constexpr size_t kMaxFiles = kEntryMask + 1 - kFileFirst;

    explicit FwCfg(mem::AddressSpace& dma_space);
    ~FwCfg();

    // Maps 0x510-0x511 and 0x514-0x51b.
    mem::Result<void> attach(mem::MemoryRegion& port_root);

    void set_uuid(const std::array<uint8_t, 16>& uuid);
    void set_ram_size(uint64_t bytes);
    void set_nographic(bool nographic);
    void set_cpus(uint16_t boot_cpus, uint16_t max_cpus);

    std::expected<void, FwCfgError> add_file(std::string name, std::vector<uint8_t> data);
    int file_select(std::string_view name) const; // -1 if absent

    // The etc/e820 file: packed little-endian {u64 address, u64 length, u32 type}.
    static std::vector<uint8_t> e820_file(std::span<const boot::E820Entry> entries);

    // Selects nothing (selector 0 rewound), DMA address cleared.
    void reset();
    const FwCfgState& state() const { return m_state; }

private:
    struct File {
        std::string name;
        std::vector<uint8_t> data;
    };
    const std::vector<uint8_t>* item(uint16_t selector) const;
    void select(uint16_t selector);
    uint8_t read_data();
    void write_dma(uint64_t offset, uint64_t value, unsigned size);
    void run_dma(uint64_t address);
    void rebuild_directory();
    void set_item(uint16_t key, std::vector<uint8_t> data);

    mem::AddressSpace& m_dma;
    FwCfgState m_state;
    std::array<std::vector<uint8_t>, kFileFirst> m_items;
    std::vector<File> m_files; // sorted by name
    mem::MemoryRegion::Ptr m_ctl_region;
    mem::MemoryRegion::Ptr m_dma_region;
};

} // namespace emu::devices

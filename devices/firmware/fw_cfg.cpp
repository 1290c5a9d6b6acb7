// devices/firmware/fw_cfg.cpp — the fw_cfg items, the data port and DMA
// (interface as documented in QEMU's docs/specs/fw_cfg.rst).
#include "devices/firmware/fw_cfg.h"

#include "common/log.h"
#include "engine/memory/address_space.h"

#include <algorithm>
#include <fmt/format.h>

namespace emu::devices {

namespace {

constexpr char kDmaSignature[] = "QEMU CFG";
constexpr size_t kDirEntrySize = 64;
constexpr uint32_t kIdTraditional = 1u << 0, kIdDma = 1u << 1;

void put_le(std::vector<uint8_t>& b, size_t off, uint64_t v, unsigned width)
{
    for (unsigned i = 0; i < width; ++i)
        b[off + i] = uint8_t(v >> 8 * i);
}

void put_be(std::vector<uint8_t>& b, size_t off, uint64_t v, unsigned width)
{
    for (unsigned i = 0; i < width; ++i)
        b[off + i] = uint8_t(v >> 8 * (width - 1 - i));
}

std::vector<uint8_t> le_bytes(uint64_t v, unsigned width)
{
    std::vector<uint8_t> b(width);
    put_le(b, 0, v, width);
    return b;
}

uint64_t be_value(const uint8_t* p, unsigned width)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < width; ++i)
        v = v << 8 | p[i];
    return v;
}

} // namespace

std::span<const FieldDesc> FwCfgState::fields()
{
    static const FieldDesc table[] = {
        field<&FwCfgState::selector>("selector"),
        field<&FwCfgState::offset>("offset"),
        field<&FwCfgState::dma_high>("dma_high"),
    };
    return table;
}

FwCfg::FwCfg(mem::AddressSpace& dma_space) : m_dma(dma_space)
{
    set_item(kSignature, {'Q', 'E', 'M', 'U'});
    set_item(kId, le_bytes(kIdTraditional | kIdDma, 4));
    set_item(kUuid, std::vector<uint8_t>(16, 0));
    set_ram_size(0);
    set_nographic(false);
    set_cpus(1, 1);
    rebuild_directory();

    mem::IoOps ctl;
    ctl.read = [this](uint64_t off, unsigned size) -> uint64_t {
        if (off == 1 && size == 1)
            return read_data();
        return size == 2 ? 0xffff : 0xff; // the selector is write-only
    };
    ctl.write = [this](uint64_t off, uint64_t v, unsigned size) {
        if (off == 0 && size == 2)
            select(uint16_t(v));
        // Writes to the data port: the old write interface, not supported.
    };
    ctl.min_access = 1;
    ctl.max_access = 2;
    m_ctl_region = std::move(*mem::MemoryRegion::io("fw_cfg", 2, std::move(ctl)));

    mem::IoOps dma;
    dma.read = [](uint64_t off, unsigned size) {
        uint64_t v = 0;
        for (unsigned i = 0; i < size; ++i)
            v |= uint64_t(uint8_t(kDmaSignature[off + i])) << 8 * i;
        return v;
    };
    dma.write = [this](uint64_t off, uint64_t v, unsigned size) { write_dma(off, v, size); };
    dma.min_access = 1;
    dma.max_access = 8;
    m_dma_region = std::move(*mem::MemoryRegion::io("fw_cfg-dma", 8, std::move(dma)));
}

FwCfg::~FwCfg() = default;

mem::Result<void> FwCfg::attach(mem::MemoryRegion& port_root)
{
    if (auto r = port_root.add_subregion(*m_ctl_region, kPort); !r)
        return r;
    return port_root.add_subregion(*m_dma_region, kDmaPort);
}

void FwCfg::set_item(uint16_t key, std::vector<uint8_t> data) { m_items[key] = std::move(data); }

void FwCfg::set_uuid(const std::array<uint8_t, 16>& uuid) { set_item(kUuid, {uuid.begin(), uuid.end()}); }
void FwCfg::set_ram_size(uint64_t bytes) { set_item(kRamSize, le_bytes(bytes, 8)); }
void FwCfg::set_nographic(bool nographic) { set_item(kNoGraphic, le_bytes(nographic ? 1 : 0, 2)); }

void FwCfg::set_cpus(uint16_t boot_cpus, uint16_t max_cpus)
{
    set_item(kNbCpus, le_bytes(boot_cpus, 2));
    set_item(kMaxCpus, le_bytes(max_cpus, 2));
}

std::expected<void, FwCfgError> FwCfg::add_file(std::string name, std::vector<uint8_t> data)
{
    if (name.empty() || name.size() > kMaxNameLength)
        return std::unexpected(FwCfgError{fmt::format("fw_cfg: file name '{}' must have 1 to {} characters", name,
                                                      kMaxNameLength)});
    if (data.size() > UINT32_MAX)
        return std::unexpected(FwCfgError{fmt::format("fw_cfg: file '{}' is larger than 4 GiB", name)});
    if (m_files.size() >= kMaxFiles)
        return std::unexpected(FwCfgError{fmt::format("fw_cfg: no selector left for file '{}'", name)});
    auto pos = std::lower_bound(m_files.begin(), m_files.end(), name,
                                [](const File& f, const std::string& n) { return f.name < n; });
    if (pos != m_files.end() && pos->name == name)
        return std::unexpected(FwCfgError{fmt::format("fw_cfg: file '{}' already exists", name)});
    m_files.insert(pos, File{std::move(name), std::move(data)});
    rebuild_directory();
    return {};
}

int FwCfg::file_select(std::string_view name) const
{
    for (size_t i = 0; i < m_files.size(); ++i)
        if (m_files[i].name == name)
            return int(kFileFirst + i);
    return -1;
}

void FwCfg::rebuild_directory()
{
    std::vector<uint8_t> dir(4 + kDirEntrySize * m_files.size(), 0);
    put_be(dir, 0, m_files.size(), 4);
    for (size_t i = 0; i < m_files.size(); ++i) {
        size_t off = 4 + kDirEntrySize * i;
        put_be(dir, off, m_files[i].data.size(), 4);
        put_be(dir, off + 4, kFileFirst + i, 2);
        std::copy(m_files[i].name.begin(), m_files[i].name.end(), dir.begin() + long(off + 8));
    }
    set_item(kFileDir, std::move(dir));
}

std::vector<uint8_t> FwCfg::e820_file(std::span<const boot::E820Entry> entries)
{
    std::vector<uint8_t> out(20 * entries.size(), 0);
    for (size_t i = 0; i < entries.size(); ++i) {
        put_le(out, 20 * i, entries[i].addr, 8);
        put_le(out, 20 * i + 8, entries[i].size, 8);
        put_le(out, 20 * i + 16, uint32_t(entries[i].type), 4);
    }
    return out;
}

const std::vector<uint8_t>* FwCfg::item(uint16_t selector) const
{
    if (selector & kArchLocal)
        return nullptr; // no arch-local items
    uint16_t key = selector & kEntryMask;
    if (key < kFileFirst)
        return m_items[key].empty() ? nullptr : &m_items[key];
    size_t n = key - kFileFirst;
    return n < m_files.size() ? &m_files[n].data : nullptr;
}

void FwCfg::select(uint16_t selector)
{
    m_state.selector = selector;
    m_state.offset = 0;
}

uint8_t FwCfg::read_data()
{
    const std::vector<uint8_t>* data = item(m_state.selector);
    if (!data || m_state.offset >= data->size())
        return 0;
    return (*data)[m_state.offset++];
}

void FwCfg::write_dma(uint64_t offset, uint64_t value, unsigned size)
{
    // The guest stores big-endian values; the port bus hands us the bytes
    // little-endian.
    if (size == 4 && offset == 0) {
        m_state.dma_high = __builtin_bswap32(uint32_t(value));
    } else if (size == 4 && offset == 4) {
        uint64_t address = uint64_t(m_state.dma_high) << 32 | __builtin_bswap32(uint32_t(value));
        m_state.dma_high = 0;
        run_dma(address);
    } else if (size == 8 && offset == 0) {
        m_state.dma_high = 0;
        run_dma(__builtin_bswap64(value));
    }
}

void FwCfg::run_dma(uint64_t address)
{
    uint8_t desc[16];
    if (auto st = m_dma.read_buf(address, desc, sizeof desc); !st) {
        log_debug("fw_cfg: DMA control structure unreadable at {}", mem::describe(st));
        return;
    }
    uint32_t control = uint32_t(be_value(desc, 4));
    uint32_t length = uint32_t(be_value(desc + 4, 4));
    uint64_t target = be_value(desc + 8, 8);

    if (control & kDmaSelect)
        select(uint16_t(control >> 16));
    bool read = control & kDmaRead, write = control & kDmaWrite, skip = control & kDmaSkip;
    bool error = false;
    if (!read && !skip && !write)
        length = 0;
    if (write)
        error = length > 0; // nothing is writable

    static const uint8_t kZeros[4096] = {};
    const std::vector<uint8_t>* data = item(m_state.selector);
    while (length > 0 && !error) {
        size_t avail = data && m_state.offset < data->size() ? data->size() - m_state.offset : 0;
        if (avail == 0) {
            // Past the end (or no item): reads are zero-filled.
            if (read) {
                uint32_t n = std::min<uint32_t>(length, sizeof kZeros);
                if (!m_dma.write_buf(target, kZeros, n))
                    error = true;
                target += n;
                length -= n;
            } else {
                length = 0;
            }
            continue;
        }
        uint32_t n = uint32_t(std::min<uint64_t>(length, avail));
        if (read && !m_dma.write_buf(target, data->data() + m_state.offset, n))
            error = true;
        m_state.offset += n;
        target += n;
        length -= n;
    }

    uint8_t status[4] = {0, 0, 0, uint8_t(error ? kDmaError : 0)}; // big-endian control
    if (auto st = m_dma.write_buf(address, status, sizeof status); !st)
        log_debug("fw_cfg: DMA status not written at {}", mem::describe(st));
}

void FwCfg::reset() { m_state = FwCfgState{}; }

} // namespace emu::devices

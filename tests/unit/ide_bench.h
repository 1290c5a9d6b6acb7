// tests/unit/ide_bench.h — a PIIX3 IDE function on a PCI bus with its ports in
// a real port address space, guest RAM in a RamBusMaster, and drives over a
// test block driver (sparse, any size, a computed pattern under the writes,
// injectable errors and a gate that holds requests). Tests drive the ports as
// ata_piix or SeaBIOS would; every wait has a timeout.
#pragma once

#include "common/log.h"
#include "devices/ide/piix_ide.h"
#include "devices/pci/pci.h"
#include "engine/memory/address_space.h"
#include "ram_bus_master.h"
#include "storage/backend.h"

#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <doctest/doctest.h>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace emu::test {

using Bytes = std::vector<uint8_t>;

inline uint8_t pattern(uint64_t offset) { return uint8_t((offset >> 9) * 13 + offset * 7 + (offset >> 11) * 3); }

// Sparse image: bytes never written read as pattern(offset).
class TestDriver final : public storage::BlockDriver {
public:
    TestDriver(uint64_t size, bool read_only) : m_size(size), m_read_only(read_only) {}

    std::string_view format_name() const override { return "test"; }
    const std::string& filename() const override { return m_name; }
    uint64_t size() const override { return m_size; }
    bool read_only() const override { return m_read_only; }

    storage::Result<void> read(uint64_t offset, std::span<uint8_t> buf) override
    {
        std::unique_lock lock(m_mutex);
        reads++;
        wait_gate(lock);
        if (fail_read)
            return storage::fail("test: read failure", fail_read);
        if (offset > m_size || buf.size() > m_size - offset)
            return storage::fail("test: read past the end", EIO);
        for (size_t i = 0; i < buf.size(); ++i)
            buf[i] = byte_at(offset + i);
        return {};
    }
    storage::Result<void> write(uint64_t offset, std::span<const uint8_t> buf) override
    {
        std::unique_lock lock(m_mutex);
        writes++;
        wait_gate(lock);
        if (fail_write)
            return storage::fail("test: write failure", fail_write);
        if (m_read_only)
            return storage::fail("test: read-only", EROFS);
        if (offset > m_size || buf.size() > m_size - offset) {
            out_of_range++;
            return storage::fail("test: write past the end", ENOSPC);
        }
        for (size_t i = 0; i < buf.size(); ++i)
            m_written[offset + i] = buf[i];
        return {};
    }
    storage::Result<void> write_zeroes(uint64_t offset, uint64_t bytes, bool) override
    {
        std::vector<uint8_t> zero(size_t(bytes), 0);
        return write(offset, zero);
    }
    storage::Result<void> discard(uint64_t offset, uint64_t bytes) override
    {
        std::lock_guard lock(m_mutex);
        discards.emplace_back(offset, bytes);
        for (uint64_t i = 0; i < bytes; ++i)
            m_written[offset + i] = 0;
        return {};
    }
    storage::Result<void> flush() override
    {
        std::unique_lock lock(m_mutex);
        flushes++;
        wait_gate(lock);
        if (fail_flush)
            return storage::fail("test: flush failure", fail_flush);
        return {};
    }
    storage::Result<storage::BlockStatus> block_status(uint64_t, uint64_t bytes) override
    {
        storage::BlockStatus st;
        st.length = bytes;
        st.allocated = st.data = true;
        return st;
    }

    uint8_t byte_at(uint64_t offset) const
    {
        auto it = m_written.find(offset);
        return it != m_written.end() ? it->second : pattern(offset);
    }
    Bytes contents(uint64_t offset, size_t len)
    {
        std::lock_guard lock(m_mutex);
        Bytes out(len);
        for (size_t i = 0; i < len; ++i)
            out[i] = byte_at(offset + i);
        return out;
    }
    size_t written_bytes()
    {
        std::lock_guard lock(m_mutex);
        return m_written.size();
    }
    // Requests wait while the gate is closed.
    void close_gate()
    {
        std::lock_guard lock(m_mutex);
        m_gate_open = false;
    }
    void open_gate()
    {
        std::lock_guard lock(m_mutex);
        m_gate_open = true;
        m_gate.notify_all();
    }
    bool waiting_at_gate()
    {
        std::lock_guard lock(m_mutex);
        return m_waiting > 0;
    }
    void set_failures(int read_err, int write_err, int flush_err = 0)
    {
        std::lock_guard lock(m_mutex);
        fail_read = read_err;
        fail_write = write_err;
        fail_flush = flush_err;
    }

    std::atomic<int> reads{0}, writes{0}, flushes{0}, out_of_range{0};
    int fail_read = 0, fail_write = 0, fail_flush = 0;
    std::vector<std::pair<uint64_t, uint64_t>> discards;

private:
    void wait_gate(std::unique_lock<std::mutex>& lock)
    {
        m_waiting++;
        m_gate.wait(lock, [this] { return m_gate_open; });
        m_waiting--;
    }

    std::string m_name = "test-image";
    uint64_t m_size;
    bool m_read_only;
    std::mutex m_mutex;
    std::condition_variable m_gate;
    bool m_gate_open = true;
    int m_waiting = 0;
    std::map<uint64_t, uint8_t> m_written;
};

struct DriveSpec {
    devices::IdeDriveKind kind = devices::IdeDriveKind::None;
    uint64_t size = 0; // 0: no backend (an empty CD-ROM)
    bool read_only = false;
    bool discard = false;
    devices::BlockErrorAction rerror = devices::BlockErrorAction::Report;
    devices::BlockErrorAction werror = devices::BlockErrorAction::Enospc;
};

inline DriveSpec disk(uint64_t sectors, bool read_only = false)
{
    return {.kind = devices::IdeDriveKind::Disk, .size = sectors * 512, .read_only = read_only};
}
inline DriveSpec cdrom(uint64_t sectors = 0)
{
    return {.kind = devices::IdeDriveKind::Cdrom, .size = sectors * 2048, .read_only = true};
}

inline std::unique_ptr<storage::BlockBackend> make_backend(uint64_t size, bool read_only, TestDriver*& view,
                                                           bool discard = true)
{
    auto driver = std::make_unique<TestDriver>(size, read_only);
    view = driver.get();
    storage::BackendOptions options;
    options.discard = discard ? storage::DiscardMode::Unmap : storage::DiscardMode::Ignore;
    return std::make_unique<storage::BlockBackend>(std::move(driver), options);
}

// ATA register offsets from the command block base.
enum : uint16_t {
    DATA = 0,
    ERROR = 1,
    FEATURE = 1,
    NSECT = 2,
    LBAL = 3,
    LBAM = 4,
    LBAH = 5,
    DEVICE = 6,
    STATUS = 7,
    COMMAND = 7
};

struct Bench {
    static constexpr uint16_t kBm = 0xc000;
    static constexpr uint64_t kRam = 4 << 20;

    mem::MemoryRegion::Ptr io_root = std::move(*mem::MemoryRegion::container("io", mem::kPortSpaceSize));
    mem::MemoryRegion::Ptr mem_root = std::move(*mem::MemoryRegion::container("mem", uint64_t(1) << 32));
    mem::AddressSpace io{"io", *io_root};
    devices::PciBus bus{*io_root, *mem_root};
    RamBusMaster ram{kRam};
    std::array<std::unique_ptr<storage::BlockBackend>, 4> backends;
    std::array<TestDriver*, 4> drivers{};
    std::unique_ptr<devices::PiixIde> ide;
    std::array<std::atomic<bool>, 2> irq_level{};
    std::array<std::atomic<int>, 2> irq_raises{};
    std::vector<std::pair<unsigned, bool>> tray_events; // (drive, open)
    struct IoError {
        unsigned drive;
        bool is_read;
        int err;
        bool stopping;
    };
    std::vector<IoError> io_errors;

    explicit Bench(DriveSpec d0, DriveSpec d1 = {}, DriveSpec d2 = {}, DriveSpec d3 = {}, bool setup = true)
    {
        std::array<DriveSpec, 4> specs{d0, d1, d2, d3};
        devices::PiixIdeConfig config;
        for (unsigned i = 0; i < 4; ++i) {
            const DriveSpec& s = specs[i];
            devices::IdeDriveConfig& d = config.drives[i];
            d.kind = s.kind;
            if (s.size)
                backends[i] = make_backend(s.size, s.read_only, drivers[i]);
            d.backend = backends[i].get();
            d.discard = s.discard;
            d.rerror = s.rerror;
            d.werror = s.werror;
            d.on_tray_moved = [this, i](bool open) { tray_events.emplace_back(i, open); };
            d.on_io_error = [this, i](bool is_read, int err, bool stopping) {
                io_errors.push_back({i, is_read, err, stopping});
            };
        }
        auto created = devices::PiixIde::create(ram, std::move(config));
        REQUIRE(created.has_value());
        ide = std::move(*created);
        for (int c = 0; c < 2; ++c)
            ide->irq(c).connect([this, c](bool level) {
                irq_level[size_t(c)] = level;
                if (level)
                    irq_raises[size_t(c)]++;
            });
        REQUIRE(bus.plug(*ide, devices::PiixIde::kDevfn));
        REQUIRE(ide->attach(*io_root));
        if (setup) {
            bus.config_write(devices::PiixIde::kDevfn, 0x20, kBm | 1, 4);
            bus.config_write(devices::PiixIde::kDevfn, 0x04, 0x0005, 2); // I/O, bus master
            ide->firmware_setup();
        }
    }
    ~Bench()
    {
        for (TestDriver* d : drivers)
            if (d)
                d->open_gate();
        ide->drain();
    }

    std::unique_lock<std::recursive_mutex> lock() { return ram.locked(); }
    uint32_t in(uint16_t port, unsigned size = 1)
    {
        auto l = lock();
        return uint32_t(io.read(port, size));
    }
    void out(uint16_t port, uint32_t v, unsigned size = 1)
    {
        auto l = lock();
        io.write(port, v, size);
    }
    bool io_stopped(unsigned drive)
    {
        auto l = lock();
        return ide->io_stopped(drive);
    }
    static uint16_t base(int ch) { return devices::PiixIde::kCommandPorts[ch]; }
    static uint16_t ctl(int ch) { return devices::PiixIde::kControlPorts[ch]; }
    uint8_t reg(int ch, uint16_t r) { return uint8_t(in(uint16_t(base(ch) + r))); }
    void set(int ch, uint16_t r, uint8_t v) { out(uint16_t(base(ch) + r), v); }
    uint8_t status(int ch) { return reg(ch, STATUS); }
    uint8_t alt_status(int ch) { return uint8_t(in(ctl(ch))); }

    // Polls alternate status until BSY clears (false after 5 s).
    bool wait_ready(int ch)
    {
        auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (alt_status(ch) & 0x80) {
            if (std::chrono::steady_clock::now() > until)
                return false;
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        return true;
    }
    bool wait_for(const std::function<bool()>& done)
    {
        auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!done()) {
            if (std::chrono::steady_clock::now() > until)
                return false;
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        return true;
    }

    void select(int ch, unsigned unit, uint8_t mode = 0x40) { set(ch, DEVICE, uint8_t(0xa0 | mode | unit << 4)); }
    void lba28(int ch, unsigned unit, uint32_t lba, uint8_t count)
    {
        select(ch, unit, uint8_t(0x40 | ((lba >> 24) & 0x0f)));
        set(ch, NSECT, count);
        set(ch, LBAL, uint8_t(lba));
        set(ch, LBAM, uint8_t(lba >> 8));
        set(ch, LBAH, uint8_t(lba >> 16));
    }
    void lba48(int ch, unsigned unit, uint64_t lba, uint16_t count)
    {
        select(ch, unit);
        set(ch, NSECT, uint8_t(count >> 8));
        set(ch, LBAL, uint8_t(lba >> 24));
        set(ch, LBAM, uint8_t(lba >> 32));
        set(ch, LBAH, uint8_t(lba >> 40));
        set(ch, NSECT, uint8_t(count));
        set(ch, LBAL, uint8_t(lba));
        set(ch, LBAM, uint8_t(lba >> 8));
        set(ch, LBAH, uint8_t(lba >> 16));
    }
    void command(int ch, uint8_t c) { set(ch, COMMAND, c); }

    // Reads `bytes` in DRQ blocks of `block` bytes, each after BSY clears
    // with DRQ set; REQUIREs DRQ for every block.
    Bytes pio_in(int ch, size_t bytes, size_t block = 512, unsigned width = 2)
    {
        Bytes out;
        while (out.size() < bytes) {
            REQUIRE(wait_ready(ch));
            uint8_t st = status(ch);
            REQUIRE_MESSAGE((st & 0x08), "no DRQ after ", out.size(), " bytes, status ", int(st));
            for (size_t i = 0; i < block && out.size() < bytes; i += width) {
                uint32_t v = in(base(ch), width);
                for (unsigned b = 0; b < width; ++b)
                    out.push_back(uint8_t(v >> 8 * b));
            }
        }
        return out;
    }
    void pio_out(int ch, const Bytes& data, size_t block = 512)
    {
        for (size_t at = 0; at < data.size();) {
            REQUIRE(wait_ready(ch));
            REQUIRE((status(ch) & 0x08));
            for (size_t i = 0; i < block && at < data.size(); i += 2, at += 2)
                out(base(ch), uint32_t(data[at] | data[at + 1] << 8), 2);
        }
    }
    std::array<uint16_t, 256> identify(int ch, unsigned unit, uint8_t cmd = 0xec)
    {
        select(ch, unit, 0);
        command(ch, cmd);
        Bytes b = pio_in(ch, 512);
        std::array<uint16_t, 256> w{};
        for (size_t i = 0; i < 256; ++i)
            w[i] = uint16_t(b[2 * i] | b[2 * i + 1] << 8);
        return w;
    }

    // ---- bus master ----
    uint16_t bm(int ch) const { return uint16_t(kBm + 8 * ch); }
    uint8_t bm_status(int ch) { return uint8_t(in(uint16_t(bm(ch) + 2))); }
    void bm_clear(int ch) { out(uint16_t(bm(ch) + 2), 0x06); }
    void bm_setup(int ch, uint32_t prd_table, bool to_memory)
    {
        out(uint16_t(bm(ch) + 4), prd_table, 4);
        out(bm(ch), to_memory ? 0x08 : 0x00);
        bm_clear(ch);
    }
    void bm_start(int ch, bool to_memory) { out(bm(ch), to_memory ? 0x09 : 0x01); }
    void bm_stop(int ch) { out(bm(ch), 0x00); }
    // A PRD table at `at`: (address, bytes) entries, EOT on the last one
    // unless `eot` is false. 65536 bytes is written as count 0.
    void prd(uint32_t at, const std::vector<std::pair<uint32_t, uint32_t>>& entries, bool eot = true)
    {
        auto l = lock();
        for (size_t i = 0; i < entries.size(); ++i) {
            uint32_t count = entries[i].second & 0xffff;
            if (eot && i + 1 == entries.size())
                count |= 0x80000000u;
            std::memcpy(ram.ram.data() + at + 8 * i, &entries[i].first, 4);
            std::memcpy(ram.ram.data() + at + 8 * i + 4, &count, 4);
        }
    }
    Bytes ram_bytes(uint64_t at, size_t len)
    {
        auto l = lock();
        return Bytes(ram.ram.begin() + long(at), ram.ram.begin() + long(at + len));
    }
    void fill_ram(uint64_t at, size_t len, uint8_t v)
    {
        auto l = lock();
        std::memset(ram.ram.data() + at, v, len);
    }

    // ---- ATAPI ----
    struct Reply {
        uint8_t status = 0, error = 0, reason = 0;
        Bytes data;
        std::vector<size_t> blocks; // DRQ block sizes
        bool ok() const { return !(status & 0x01); }
        uint8_t sense_key() const { return error >> 4; }
    };
    // PACKET with `cdb` to drive `unit`: PIO data in blocks of the byte
    // count limit, or DMA into RAM through a PRD table the caller set up.
    Reply atapi(int ch, unsigned unit, const Bytes& cdb, uint16_t limit = 0xfffe, bool dma = false)
    {
        select(ch, unit, 0);
        set(ch, FEATURE, dma ? 1 : 0);
        set(ch, LBAM, uint8_t(limit));
        set(ch, LBAH, uint8_t(limit >> 8));
        command(ch, 0xa0);
        REQUIRE(wait_ready(ch));
        REQUIRE((alt_status(ch) & 0x08));
        REQUIRE(reg(ch, NSECT) == 0x01); // CoD: the packet
        Bytes packet = cdb;
        packet.resize(12, 0);
        for (size_t i = 0; i < 12; i += 2)
            out(base(ch), uint32_t(packet[i] | packet[i + 1] << 8), 2);
        Reply r;
        if (dma)
            bm_start(ch, true);
        for (int guard = 0; guard < 100000; ++guard) {
            REQUIRE(wait_ready(ch));
            uint8_t st = alt_status(ch);
            if (!(st & 0x08) || dma)
                break;
            REQUIRE(reg(ch, NSECT) == 0x02); // data to the host
            size_t n = size_t(reg(ch, LBAM) | reg(ch, LBAH) << 8);
            r.blocks.push_back(n);
            for (size_t i = 0; i < n; i += 2) {
                uint32_t v = in(base(ch), 2);
                r.data.push_back(uint8_t(v));
                if (i + 1 < n)
                    r.data.push_back(uint8_t(v >> 8));
            }
        }
        if (dma)
            REQUIRE(wait_for([&] { return !(alt_status(ch) & 0x88); }));
        r.reason = reg(ch, NSECT);
        r.error = reg(ch, ERROR);
        r.status = status(ch);
        if (dma)
            bm_stop(ch);
        return r;
    }
    Bytes request_sense(int ch, unsigned unit)
    {
        Reply r = atapi(ch, unit, {0x03, 0, 0, 0, 18});
        REQUIRE(r.ok());
        return r.data;
    }
};

} // namespace emu::test

// devices/acpi/piix4_pm.cpp — PIIX4 power management as ACPI fixed hardware
// (register semantics from the ACPI specification's fixed hardware chapter
// and the 82371AB datasheet).
#include "devices/acpi/piix4_pm.h"

#include "common/log.h"

#include <cassert>

namespace emu::devices {

namespace {

constexpr uint16_t kStatusBits = Piix4Pm::kTmrSts | Piix4Pm::kBmSts | Piix4Pm::kGblSts | Piix4Pm::kPwrBtnSts |
                                 Piix4Pm::kSlpBtnSts | Piix4Pm::kRtcSts | Piix4Pm::kWakSts;
// Enables exist for TMR, GBL, PWRBTN, SLPBTN and RTC.
constexpr uint16_t kEnableBits = Piix4Pm::kTmrSts | Piix4Pm::kGblSts | Piix4Pm::kPwrBtnSts | Piix4Pm::kSlpBtnSts |
                                 Piix4Pm::kRtcSts;
constexpr uint16_t kSlpTypMask = 7u << Piix4Pm::kSlpTypShift;
constexpr uint16_t kControlStored = Piix4Pm::kSciEn | Piix4Pm::kBmRld | kSlpTypMask;
constexpr uint64_t kTimerBit = uint64_t(1) << 31; // TMR_VAL_EXT: a 32-bit timer

} // namespace

std::span<const FieldDesc> Piix4PmState::fields()
{
    static const FieldDesc table[] = {
        field<&Piix4PmState::pm1_status>("pm1_status"),
        field<&Piix4PmState::pm1_enable>("pm1_enable"),
        field<&Piix4PmState::pm1_control>("pm1_control"),
        field<&Piix4PmState::gpe_status>("gpe_status"),
        field<&Piix4PmState::gpe_enable>("gpe_enable"),
    };
    return table;
}

Piix4Pm::Piix4Pm(Clock& clock)
    : PciDevice("piix4-pm", PciId{.vendor = 0x8086, .device = 0x7113, .revision = 0x03, .class_code = 0x068000}),
      m_clock(clock)
{
    init_config16(pci::kStatus, 0x0280, 0, 0xf900); // fast back-to-back, DEVSEL medium
    init_config32(0x40, kPmBase | 1u);              // PMBA: fixed, I/O space indicator
    init_config8(0x80, 0x01);                       // PMREGMISC: PM I/O space enabled
    init_config32(0x90, 0x00000001);                // SMBBA: no SMBus host here

    m_overflow = std::make_unique<Timer>(clock, [this] { overflow(); });

    mem::IoOps pm;
    pm.read = [this](uint64_t off, unsigned size) { return pm_read(off, size); };
    pm.write = [this](uint64_t off, uint64_t v, unsigned size) { pm_write(off, v, size); };
    pm.min_access = 1;
    pm.max_access = 4;
    m_pm_region = std::move(*mem::MemoryRegion::io("piix4-pm", kPmSize, std::move(pm)));

    mem::IoOps gpe;
    gpe.read = [this](uint64_t off, unsigned size) { return gpe_read(off, size); };
    gpe.write = [this](uint64_t off, uint64_t v, unsigned size) { gpe_write(off, v, size); };
    gpe.min_access = 1;
    gpe.max_access = 4;
    m_gpe_region = std::move(*mem::MemoryRegion::io("piix4-gpe0", kGpe0Size, std::move(gpe)));

    reset_pm();
}

Piix4Pm::~Piix4Pm() = default;

mem::Result<void> Piix4Pm::attach(mem::MemoryRegion& port_root)
{
    if (auto r = port_root.add_subregion(*m_pm_region, kPmBase); !r)
        return r;
    return port_root.add_subregion(*m_gpe_region, kGpe0Base);
}

void Piix4Pm::device_reset() { reset_pm(); }

void Piix4Pm::reset_pm()
{
    m_pm = Piix4PmState{};
    m_pm.pm1_control = kSciEn;
    arm_overflow();
    update_sci();
}

// ---- PM timer ------------------------------------------------------------

uint64_t Piix4Pm::ticks() const
{
    int64_t now = m_clock.now_ns();
    if (now <= 0)
        return 0;
    return uint64_t((unsigned __int128)now * kTimerHz / kNsPerSec);
}

uint32_t Piix4Pm::timer_value() const { return uint32_t(ticks()); }

void Piix4Pm::arm_overflow()
{
    // The first instant the tick count reaches the next multiple of 2^31.
    unsigned __int128 boundary = ((unsigned __int128)(ticks() / kTimerBit) + 1) * kTimerBit;
    unsigned __int128 ns = (boundary * kNsPerSec + kTimerHz - 1) / kTimerHz;
    m_overflow->arm(int64_t(ns));
}

void Piix4Pm::overflow()
{
    m_pm.pm1_status |= kTmrSts;
    update_sci();
    arm_overflow();
}

// ---- registers -----------------------------------------------------------

void Piix4Pm::update_sci()
{
    bool pending = (m_pm.pm1_status & m_pm.pm1_enable & kEnableBits) != 0;
    for (size_t i = 0; i < m_pm.gpe_status.size(); ++i)
        pending |= (m_pm.gpe_status[i] & m_pm.gpe_enable[i]) != 0;
    m_sci.set(pending && (m_pm.pm1_control & kSciEn));
}

uint64_t Piix4Pm::pm_read(uint64_t offset, unsigned size)
{
    uint32_t timer = timer_value(); // one sample per access
    uint64_t v = 0;
    for (unsigned i = 0; i < size; ++i) {
        uint64_t o = offset + i;
        uint8_t b = 0;
        switch (o) {
        case 0: case 1: b = uint8_t(m_pm.pm1_status >> 8 * (o & 1)); break;
        case 2: case 3: b = uint8_t(m_pm.pm1_enable >> 8 * (o & 1)); break;
        case 4: case 5: b = uint8_t(m_pm.pm1_control >> 8 * (o & 1)); break;
        case 8: case 9: case 10: case 11: b = uint8_t(timer >> 8 * (o - 8)); break;
        default: break; // processor control and the rest of the block: not modelled
        }
        v |= uint64_t(b) << 8 * i;
    }
    return v;
}

void Piix4Pm::pm_write(uint64_t offset, uint64_t value, unsigned size)
{
    bool sleep = false;
    for (unsigned i = 0; i < size; ++i) {
        uint64_t o = offset + i;
        unsigned shift = 8 * (o & 1);
        uint16_t b = uint16_t(uint8_t(value >> 8 * i)) << shift;
        uint16_t lane = uint16_t(0xff << shift);
        switch (o) {
        case 0: case 1: m_pm.pm1_status &= uint16_t(~(b & kStatusBits)); break;
        case 2: case 3: m_pm.pm1_enable = uint16_t((m_pm.pm1_enable & ~lane) | (b & kEnableBits)); break;
        case 4: case 5:
            m_pm.pm1_control = uint16_t((m_pm.pm1_control & ~(lane & kControlStored)) | (b & kControlStored));
            sleep |= (b & kSlpEn) != 0;
            break;
        default: break;
        }
    }
    update_sci();
    if (!sleep)
        return;
    int type = (m_pm.pm1_control & kSlpTypMask) >> kSlpTypShift;
    if (type == 0) {
        log_info("piix4-pm: S5 (soft off) requested");
        if (m_poweroff)
            m_poweroff();
    } else {
        log_info("piix4-pm: sleep type {} is not supported; ignored", type);
    }
}

uint64_t Piix4Pm::gpe_read(uint64_t offset, unsigned size)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < size; ++i) {
        uint64_t o = offset + i;
        uint8_t b = o < 4 ? m_pm.gpe_status[o] : m_pm.gpe_enable[o - 4];
        v |= uint64_t(b) << 8 * i;
    }
    return v;
}

void Piix4Pm::gpe_write(uint64_t offset, uint64_t value, unsigned size)
{
    for (unsigned i = 0; i < size; ++i) {
        uint64_t o = offset + i;
        uint8_t b = uint8_t(value >> 8 * i);
        if (o < 4)
            m_pm.gpe_status[o] &= uint8_t(~b);
        else
            m_pm.gpe_enable[o - 4] = b;
    }
    update_sci();
}

void Piix4Pm::press_power_button()
{
    m_pm.pm1_status |= kPwrBtnSts;
    update_sci();
}

std::string Piix4Pm::dump() const
{
    return PciDevice::dump() + dump_state(Piix4PmState::fields(), &m_pm);
}

} // namespace emu::devices

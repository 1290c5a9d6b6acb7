// devices/acpi/piix4_pm.h — the PIIX4 power-management function (00:01.3,
// 8086:7113) as the ACPI fixed hardware of the PC machine.
//
// The PM I/O block sits at 0x600 (fixed, as on QEMU's pc; PMBA at config
// 0x40 reads 0x601 and is read-only, PMREGMISC at 0x80 reads 1):
//   +0 PM1a_EVT status (16-bit, write 1 to clear): TMR_STS 0, BM_STS 4,
//      GBL_STS 5, PWRBTN_STS 8, SLPBTN_STS 9, RTC_STS 10, WAK_STS 15
//   +2 PM1a_EVT enable (16-bit): TMR_EN 0, GBL_EN 5, PWRBTN_EN 8,
//      SLPBTN_EN 9, RTC_EN 10
//   +4 PM1a_CNT (16-bit): SCI_EN 0 (set at reset: there is no SMM firmware to
//      hand over, and the FADT's SMI_CMD is 0), BM_RLD 1, SLP_TYP 12:10,
//      SLP_EN 13 (write-only). SLP_EN with SLP_TYP 0 is S5: the poweroff
//      handler runs (the DSDT's \_S5 says 0). Other sleep types are logged
//      and ignored.
//   +8 PM_TMR (32-bit, read-only; the FADT sets TMR_VAL_EXT): 3.579545 MHz
//      from the Clock. Each change of bit 31 sets TMR_STS.
// The GPE0 block at 0xafe0: 4 status bytes (write 1 to clear) then 4 enable
// bytes; nothing raises a GPE yet.
// SCI (ISA IRQ 9, level, active high) is high while SCI_EN is set and any
// enabled PM1 or GPE0 status bit is set.
// Any access size works anywhere in both blocks (a 32-bit access to the
// status/enable pair is two 16-bit registers); the timer is sampled once per
// access.
#pragma once

#include "devices/pci/pci.h"
#include "devices/state.h"
#include "engine/clock.h"
#include "engine/irq.h"
#include "engine/memory/region.h"

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

namespace emu::devices {

struct Piix4PmState {
    uint16_t pm1_status = 0;
    uint16_t pm1_enable = 0;
    uint16_t pm1_control = 0;
    std::array<uint8_t, 4> gpe_status{};
    std::array<uint8_t, 4> gpe_enable{};
    static std::span<const FieldDesc> fields();
};

class Piix4Pm final : public PciDevice {
public:
    static constexpr uint8_t kDevfn = pci::devfn(1, 3);
    static constexpr uint16_t kPmBase = 0x600;
    static constexpr uint16_t kPmSize = 0x40;
    static constexpr uint16_t kGpe0Base = 0xafe0;
    static constexpr uint16_t kGpe0Size = 8; // GPE0_BLK_LEN: status + enable
    static constexpr uint16_t kPm1EvtOffset = 0x0, kPm1CntOffset = 0x4, kPmTmrOffset = 0x8;
    static constexpr uint64_t kTimerHz = 3'579'545;
    static constexpr uint8_t kSciIrq = 9;

    // PM1 status / enable bits.
    static constexpr uint16_t kTmrSts = 1u << 0, kBmSts = 1u << 4, kGblSts = 1u << 5, kPwrBtnSts = 1u << 8,
                              kSlpBtnSts = 1u << 9, kRtcSts = 1u << 10, kWakSts = 1u << 15;
    // PM1 control bits.
    static constexpr uint16_t kSciEn = 1u << 0, kBmRld = 1u << 1, kGblRls = 1u << 2, kSlpEn = 1u << 13;
    static constexpr int kSlpTypShift = 10;

    explicit Piix4Pm(Clock& clock);
    ~Piix4Pm() override;

    // Maps the PM block at 0x600 and GPE0 at 0xafe0.
    mem::Result<void> attach(mem::MemoryRegion& port_root);

    IrqLine& sci() { return m_sci; }
    // Runs on SLP_EN with SLP_TYP 0 (S5), on the thread of the port write.
    void set_poweroff_handler(std::function<void()> handler) { m_poweroff = std::move(handler); }

    // The fixed power button (ACPI powerdown).
    void press_power_button();

    uint32_t timer_value() const; // PM_TMR now

    const Piix4PmState& pm_state() const { return m_pm; }
    std::string dump() const;

private:
    void device_reset() override;
    void reset_pm();
    uint64_t pm_read(uint64_t offset, unsigned size);
    void pm_write(uint64_t offset, uint64_t value, unsigned size);
    uint64_t gpe_read(uint64_t offset, unsigned size);
    void gpe_write(uint64_t offset, uint64_t value, unsigned size);
    void update_sci();
    void arm_overflow();
    void overflow();
    uint64_t ticks() const;

    Clock& m_clock;
    Piix4PmState m_pm;
    IrqLine m_sci;
    std::function<void()> m_poweroff;
    std::unique_ptr<Timer> m_overflow;
    mem::MemoryRegion::Ptr m_pm_region;
    mem::MemoryRegion::Ptr m_gpe_region;
};

} // namespace emu::devices

// devices/pci/i440fx.cpp — i440FX host bridge and PIIX3 ISA bridge (register
// layout from the Intel 82441FX and 82371SB datasheets).
#include "devices/pci/i440fx.h"

#include "common/log.h"

namespace emu::devices {

namespace {

constexpr uint16_t kIntel = 0x8086;

bool overlaps(unsigned offset, unsigned size, unsigned start, unsigned end)
{
    return offset < end && start < offset + size;
}

} // namespace

// ---- i440FX --------------------------------------------------------------

I440fx::I440fx()
    : PciDevice("i440fx", PciId{.vendor = kIntel, .device = 0x1237, .revision = 0x02, .class_code = 0x060000})
{
    for (unsigned n = 0; n < kPamCount; ++n)
        init_config8(kPam0 + n, 0, n == 0 ? 0x70 : 0x77);
    init_config8(kSmram, 0x02, 0x78); // C_BASE_SEG fixed at 010 (0xa0000)
}

// ---- PIIX3 ---------------------------------------------------------------

std::span<const FieldDesc> Piix3State::fields()
{
    static const FieldDesc table[] = {
        field<&Piix3State::pirq>("pirq"),
        field<&Piix3State::reset_control>("reset_control"),
    };
    return table;
}

Piix3::Piix3(PciBus& bus)
    : PciDevice("piix3", PciId{.vendor = kIntel, .device = 0x7000, .revision = 0x00, .class_code = 0x060100}),
      m_pci(bus)
{
    init_config16(pci::kCommand, pci::kCommandIo | pci::kCommandMemory | pci::kCommandMaster, 0x0547);
    init_config16(pci::kStatus, 0x0200, 0, 0xf900); // DEVSEL medium
    // Reset values of the ISA bridge registers, stored (no behaviour here).
    struct Reg {
        uint8_t offset, value, wmask;
    };
    static constexpr Reg kRegs[] = {
        {0x4c, 0x4d, 0x7f}, {0x4e, 0x03, 0xff}, {0x4f, 0x00, 0xff}, {0x69, 0x02, 0xfe}, {0x6a, 0x00, 0xff},
        {0x70, 0x80, 0xcf}, {0x71, 0x80, 0xcf}, {0x76, 0x0c, 0x8f}, {0x77, 0x0c, 0x8f}, {0x78, 0x02, 0xff},
        {0x79, 0x00, 0xff}, {0x80, 0x00, 0x7f}, {0x82, 0x00, 0x0f}, {0xa0, 0x08, 0x1f}, {0xa2, 0x00, 0xff},
        {0xa3, 0x00, 0xff}, {0xa4, 0x00, 0xff}, {0xa5, 0x00, 0xff}, {0xa6, 0x00, 0xff}, {0xa7, 0x00, 0xff},
        {0xa8, 0x0f, 0xff}, {0xaa, 0x00, 0xff}, {0xab, 0x00, 0xff}, {0xac, 0x00, 0xff}, {0xae, 0x00, 0xff},
    };
    for (const Reg& r : kRegs)
        init_config8(r.offset, r.value, r.wmask);
    for (unsigned n = 0; n < kPirqs; ++n)
        init_config8(kPirqRouteControl + n, 0x80, 0x8f);

    PciIntxRouter router;
    router.pirqs = kPirqs;
    router.map_pirq = [](uint8_t devfn, int pin) { return pirq_of(devfn, pin); };
    router.set_pirq = [this](int pirq, bool level) { pirq_changed(pirq, level); };
    router.isa_irq = [this](int pirq) { return pirq_isa_irq(pirq); };
    m_pci.set_intx_router(std::move(router));
    m_pci.set_cf9_handler([this] { return m_piix.reset_control; },
                          [this](uint8_t v) {
                              if (v & 0x04) {
                                  log_info("piix3: reset through 0xcf9 ({:#04x})", v);
                                  if (m_reset_handler)
                                      m_reset_handler();
                                  return;
                              }
                              m_piix.reset_control = v & 0x02;
                          });
}

Piix3::~Piix3()
{
    m_pci.set_intx_router({.pirqs = kPirqs, .map_pirq = {}, .set_pirq = {}, .isa_irq = {}});
    m_pci.set_cf9_handler({}, {});
}

int Piix3::pirq_isa_irq(int pirq) const
{
    uint8_t v = config8(kPirqRouteControl + unsigned(pirq % kPirqs));
    if (v & 0x80)
        return -1;
    int irq = v & 0x0f;
    if (irq <= 2 || irq == 8 || irq == 13)
        return -1; // reserved encodings
    return irq;
}

void Piix3::pirq_changed(int pirq, bool level)
{
    m_piix.pirq[size_t(pirq)] = level;
    m_gsi[size_t(pirq)].set(level);
    update_isa();
}

void Piix3::update_isa()
{
    std::array<bool, kIsaIrqs> level{};
    for (int n = 0; n < kPirqs; ++n) {
        int irq = pirq_isa_irq(n);
        if (irq >= 0 && m_piix.pirq[size_t(n)])
            level[size_t(irq)] = true;
    }
    for (int irq = 0; irq < kIsaIrqs; ++irq)
        m_isa[size_t(irq)].set(level[size_t(irq)]);
}

void Piix3::config_written(unsigned offset, unsigned size)
{
    if (overlaps(offset, size, kPirqRouteControl, kPirqRouteControl + kPirqs))
        update_isa();
}

void Piix3::device_reset()
{
    m_piix.reset_control = 0;
    // PIRQ levels come from the bus (devices reset their INTx themselves).
    update_isa();
}

void Piix3::firmware_setup(std::array<uint8_t, 4> irqs)
{
    for (unsigned n = 0; n < kPirqs; ++n)
        config_write(kPirqRouteControl + n, irqs[n] & 0x0f, 1);
}

std::string Piix3::dump() const
{
    return PciDevice::dump() + dump_state(Piix3State::fields(), &m_piix);
}

} // namespace emu::devices

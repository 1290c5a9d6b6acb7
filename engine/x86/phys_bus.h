// engine/x86/phys_bus.h — what the CPU needs of the machine's memory and
// I/O space. The machine implements it over engine/memory; tests implement it
// over a plain buffer.
#pragma once

#include <cstdint>

namespace emu::x86 {

class PhysBus {
public:
    virtual ~PhysBus() = default;
    // Host pointer to the start of the 4 KiB RAM/ROM page holding gpa, or
    // nullptr when the page is MMIO or unassigned. 'writable' is false for ROM.
    virtual uint8_t* ram_page(uint64_t gpa, bool& writable) = 0;
    virtual uint64_t mmio_read(uint64_t gpa, unsigned size) = 0;
    virtual void mmio_write(uint64_t gpa, uint64_t value, unsigned size) = 0;
    virtual uint64_t port_read(uint16_t port, unsigned size) = 0;
    virtual void port_write(uint16_t port, uint64_t value, unsigned size) = 0;
    // Pages holding translated code are never written through the TLB's fast
    // path; writes to them come here after the store (self-modifying code).
    virtual bool page_has_code(uint64_t gpa_page) { return false; }
    virtual void code_written(uint64_t gpa, unsigned size) {}
    // Every RAM write through the slow path (dirty tracking).
    virtual void ram_written(uint64_t gpa, unsigned size) {}
    // MSRs the machine owns (the local APIC's base and timer): true if the
    // machine handled the access, false to let the CPU state decide. A
    // handled write the machine refuses sets 'fault' (the CPU raises #GP).
    virtual bool msr_read(uint32_t index, uint64_t& value) { return false; }
    virtual bool msr_write(uint32_t index, uint64_t value, bool& fault) { return false; }
};

} // namespace emu::x86

// engine/x86/vcpu.h — one virtual CPU on the engine (accel=tcg): the run
// loop, the translated-block cache and interrupt delivery.
//
// The machine drives it through run(), which returns why it stopped; another
// thread makes run() return with kick(); interrupts arrive through the
// InterruptSource the machine installs (the PIC/APIC), NMIs through raise_nmi().
#pragma once

#include "engine/interp/interpreter.h"
#include "engine/vcpu.h"
#include "engine/x86/code_tracker.h"
#include "engine/x86/env.h"
#include "engine/x86/frontend.h"

#include <atomic>
#include <memory>
#include <unordered_map>
#include <vector>

namespace emu::x86 {

using emu::InterruptSource;
using emu::VcpuExit;

struct VcpuStats {
    uint64_t blocks_translated = 0;
    uint64_t blocks_invalidated = 0;
    uint64_t exceptions = 0;
};

// The architectural state after RESET (real mode at F000:FFF0), for any
// accelerator: our engine's reset() and KVM's load it.
CpuState power_on_state(const CpuModel& model);

class Vcpu final : public VcpuBackend, private PhysBus {
public:
    // 'code' is shared by the vCPUs of one machine (self- and cross-modifying
    // code); without one, the vCPU keeps its own.
    Vcpu(PhysBus& bus, const CpuModel& model, unsigned index = 0, unsigned count = 1, CodeTracker* code = nullptr);
    ~Vcpu() override;

    CpuState& state() { return m_state; }
    CpuEnv& env() { return m_env; }
    const VcpuStats& stats() const { return m_stats; }

    // Power-on state: real mode at F000:FFF0.
    void reset() override;
    VcpuExit run(uint64_t max_instructions = ~0ull) override;
    void kick() override { m_kick.store(true, std::memory_order_release); }
    void set_interrupt_source(InterruptSource* src) override { m_irq = src; }
    void raise_nmi() override { m_nmi.store(true, std::memory_order_release); }
    // Drops every translated block (e.g. after a loader rewrote guest RAM).
    void flush_code();

private:
    // A block is found by where its code is (physical) and how it was
    // decoded (mode bits); the virtual RIP is in the key because the IR
    // holds absolute jump targets.
    struct Key {
        uint64_t phys_pc;
        uint64_t rip;
        uint64_t cs_base;
        uint32_t hflags;
        bool operator==(const Key& o) const
        {
            return phys_pc == o.phys_pc && rip == o.rip && cs_base == o.cs_base && hflags == o.hflags;
        }
    };
    struct KeyHash {
        size_t operator()(const Key& k) const
        {
            return std::hash<uint64_t>()(k.phys_pc * 31 ^ k.rip ^ (uint64_t(k.hflags) << 52) ^ k.cs_base);
        }
    };
    struct Block {
        interp::CompiledBlock code;
        Key key;
        std::vector<uint64_t> pages;
    };
    struct JumpEntry {
        uint64_t rip = ~0ull, cs_base = 0;
        uint32_t hflags = 0;
        Block* block = nullptr;
    };

    Block* find_block();
    void invalidate_page(uint64_t page);
    bool take_interrupts();
    void check_inbox();

    // PhysBus, wrapped around the machine's: tracks pages holding code.
    uint8_t* ram_page(uint64_t gpa, bool& writable) override { return m_bus.ram_page(gpa, writable); }
    uint64_t mmio_read(uint64_t gpa, unsigned size) override { return m_bus.mmio_read(gpa, size); }
    void mmio_write(uint64_t gpa, uint64_t v, unsigned size) override { m_bus.mmio_write(gpa, v, size); }
    uint64_t port_read(uint16_t port, unsigned size) override { return m_bus.port_read(port, size); }
    void port_write(uint16_t port, uint64_t v, unsigned size) override { m_bus.port_write(port, v, size); }
    bool page_has_code(uint64_t page) override { return m_code->has_code(page); }
    void code_written(uint64_t gpa, unsigned size) override;
    void ram_written(uint64_t gpa, unsigned size) override { m_bus.ram_written(gpa, size); }
    bool msr_read(uint32_t index, uint64_t& value) override { return m_bus.msr_read(index, value); }
    bool msr_write(uint32_t index, uint64_t value, bool& fault) override
    {
        return m_bus.msr_write(index, value, fault);
    }

    PhysBus& m_bus;
    std::unique_ptr<CodeTracker> m_own_code;
    CodeTracker* m_code;
    unsigned m_code_slot;
    CpuState m_state;
    CpuEnv m_env;
    VcpuStats m_stats;
    std::unordered_map<Key, std::unique_ptr<Block>, KeyHash> m_blocks;
    std::unordered_map<uint64_t, std::vector<Block*>> m_code_pages;
    std::vector<std::unique_ptr<Block>> m_graveyard; // invalidated while possibly running
    std::vector<JumpEntry> m_jump_cache;
    uint64_t m_jump_generation = 0;
    std::vector<uint64_t> m_frame;
    InterruptSource* m_irq = nullptr;
    std::atomic<bool> m_kick{false};
    std::atomic<bool> m_nmi{false};
};

} // namespace emu::x86

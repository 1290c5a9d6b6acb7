// engine/memory/address_space.h — a guest physical address space (memory, or
// the 64 KiB port-I/O space: same machinery) over a root region.
//
// Publication: the flat view is immutable; the current one is a
// shared_ptr guarded by a mutex, plus an atomic generation counter. Readers
// do not take the mutex per access: each thread caches the view it last used
// per address space and revalidates it with one acquire load of
// `generation()`; only a thread whose cached view is stale (once per thread
// per rebuild) takes the mutex to copy the new shared_ptr. So lookups never
// see a half-built view, never contend on a shared line per access, and the
// mutex is uncontended in practice. (std::atomic<std::shared_ptr> was the
// other candidate: libstdc++ 12 implements it with a spin lock per load plus
// reference-count RMWs, and its load() unlocks with relaxed order, which
// ThreadSanitizer rightly reports as a race.) A thread holds a stale view at
// most until its next access, and a view stays alive while an access on it
// is in progress even if a device callback changes the topology underneath.
//
// Topology changes and listener (un)registration for one address space are
// serialised by the caller (the control thread or the VM's device lock).
// Listeners run on that thread, after the new view is published.
#pragma once

#include "engine/memory/dirty.h"
#include "engine/memory/flat_view.h"
#include "engine/memory/region.h"

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

namespace emu::mem {

inline constexpr uint64_t kPortSpaceSize = 0x10000;

// What lies at a guest physical address (for the soft MMU's TLB fill).
struct Lookup {
    enum class Kind : uint8_t { Unassigned, Ram, Io };
    Kind kind = Kind::Unassigned;
    bool writable = false;    // Ram: false for ROM and read-only RAM/aliases
    uint64_t length = 0;      // bytes from gpa with this same mapping (Unassigned: to the
                              // next mapping; saturated at 2^64-1)
    uint8_t* host = nullptr;  // Ram: host address of gpa
    RamBlock* block = nullptr; // Ram: page identity for dirty tracking...
    uint64_t ram_offset = 0;   // ...and code invalidation: (block, ram_offset)
    MemoryRegion* region = nullptr; // Ram and Io: the region
    uint64_t offset = 0;            // Ram and Io: offset of gpa into the region
};

// Result of read_buf / write_buf / load_rom: ok, or why and where it stopped.
struct BufStatus {
    enum class Cause : uint8_t { Ok, Unassigned, ReadOnly, NotMemory, Wrap };
    Cause cause = Cause::Ok;
    uint64_t addr = 0; // first byte not transferred
    explicit operator bool() const { return cause == Cause::Ok; }
};
std::string describe(const BufStatus& status); // "0xa0000: unassigned"

class AddressSpace {
public:
    using ListenerId = uint64_t;
    using Listener = std::function<void(std::span<const RamRange> ranges)>;

    AddressSpace(std::string name, MemoryRegion& root);
    ~AddressSpace();
    AddressSpace(const AddressSpace&) = delete;
    AddressSpace& operator=(const AddressSpace&) = delete;

    const std::string& name() const { return m_name; }
    MemoryRegion& root() const { return m_root; }

    // Bumps on every rebuild; a vCPU flushes its TLB when it changes.
    uint64_t generation() const { return m_generation.load(std::memory_order_acquire); }
    std::shared_ptr<const FlatView> view() const;

    Lookup lookup(uint64_t gpa) const;

    // Accesses of 1, 2, 4 or 8 bytes, little-endian, at any alignment; an
    // access crossing regions is split by byte range. Unassigned bytes read
    // as all ones and ignore writes (bytes past 2^64-1 are unassigned: no
    // wrap); writes to ROM/read-only RAM are dropped. Allocation-free.
    uint64_t read(uint64_t gpa, unsigned size);
    void write(uint64_t gpa, uint64_t value, unsigned size);

    // Block transfers for loaders, DMA and the monitor: RAM by memcpy, I/O
    // through the callbacks in aligned pieces of up to 8 bytes. Stop at the
    // first unassigned byte (or, writing, read-only byte) with its address;
    // the bytes before it are transferred. A range wrapping past 2^64 is
    // refused before any access.
    BufStatus read_buf(uint64_t gpa, void* buf, uint64_t len);
    BufStatus write_buf(uint64_t gpa, const void* buf, uint64_t len);
    // Loaders: writes RAM and ROM alike; refuses I/O (NotMemory).
    BufStatus load_rom(uint64_t gpa, const void* buf, uint64_t len);

    // Dirty pages of `client` in RAM mapped at [gpa, gpa+len): true if any;
    // clears them.
    bool test_and_clear_dirty(DirtyClient client, uint64_t gpa, uint64_t len);

    // Unassigned accesses through read/write (the first few are logged).
    uint64_t unassigned_accesses() const { return m_unassigned.load(std::memory_order_relaxed); }

    // Called now with the current RAM/ROM ranges, then after every rebuild.
    ListenerId add_listener(Listener listener);
    void remove_listener(ListenerId id);

    std::string dump_tree() const; // `info mtree`
    std::string dump_flat() const; // `info mtree -f`

private:
    friend class MemoryRegion;
    friend class TopologyBatch;
    friend class ViewPin;

    enum class WriteMode { Guest, Dma, Loader };
    void schedule_rebuild(); // within a TopologyBatch: defer to its end
    void rebuild();
    const FlatView& cached_view() const;
    void note_unassigned(const char* what, uint64_t gpa, unsigned size);
    BufStatus transfer_out(uint64_t gpa, const void* buf, uint64_t len, WriteMode mode);

    std::string m_name;
    MemoryRegion& m_root;
    const uint64_t m_id; // unique per process; keys the per-thread view cache
    mutable std::mutex m_view_lock;
    std::shared_ptr<const FlatView> m_view; // guarded by m_view_lock
    std::atomic<uint64_t> m_generation{0};
    std::atomic<uint64_t> m_unassigned{0};
    std::vector<std::pair<ListenerId, Listener>> m_listeners;
    ListenerId m_next_listener = 1;
    bool m_pending = false; // queued in the current thread's TopologyBatch
};

// Groups topology changes: address spaces affected inside the batch are
// rebuilt once (one generation bump, one listener call), when the outermost
// batch on this thread ends. Batches are per thread; an address space must
// not be destroyed by another thread while queued in a batch.
class TopologyBatch {
public:
    TopologyBatch();
    ~TopologyBatch();
    TopologyBatch(const TopologyBatch&) = delete;
    TopologyBatch& operator=(const TopologyBatch&) = delete;
};

} // namespace emu::mem

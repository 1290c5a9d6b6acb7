// devices/boot/bytes.h — little-endian fields of images and boot structures.
// Readers are only called on ranges the caller has bounds-checked (an
// assertion guards the invariant); writers grow nothing: the buffer is sized
// for its structure up front.
#pragma once

#include <cassert>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

namespace emu::devices::boot::le {

inline bool fits(std::span<const uint8_t> b, uint64_t off, uint64_t n)
{
    return off <= b.size() && n <= b.size() - off;
}

template <class T>
inline T get(std::span<const uint8_t> b, uint64_t off)
{
    assert(fits(b, off, sizeof(T)));
    T v;
    std::memcpy(&v, b.data() + off, sizeof(T)); // the host is x86: little-endian
    return v;
}
inline uint8_t u8(std::span<const uint8_t> b, uint64_t off) { return get<uint8_t>(b, off); }
inline uint16_t u16(std::span<const uint8_t> b, uint64_t off) { return get<uint16_t>(b, off); }
inline uint32_t u32(std::span<const uint8_t> b, uint64_t off) { return get<uint32_t>(b, off); }
inline uint64_t u64(std::span<const uint8_t> b, uint64_t off) { return get<uint64_t>(b, off); }

template <class T>
inline void put(std::vector<uint8_t>& b, uint64_t off, T v)
{
    assert(off + sizeof(T) <= b.size());
    std::memcpy(b.data() + off, &v, sizeof(T));
}
inline void put8(std::vector<uint8_t>& b, uint64_t off, uint8_t v) { put(b, off, v); }
inline void put16(std::vector<uint8_t>& b, uint64_t off, uint16_t v) { put(b, off, v); }
inline void put32(std::vector<uint8_t>& b, uint64_t off, uint32_t v) { put(b, off, v); }
inline void put64(std::vector<uint8_t>& b, uint64_t off, uint64_t v) { put(b, off, v); }

} // namespace emu::devices::boot::le

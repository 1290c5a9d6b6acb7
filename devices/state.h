// devices/state.h — a device's migratable state, declared once (STYLE 8).
//
// A device keeps everything that must survive migration in one plain struct
// (integers, bools, std::arrays of those or of nested state structs) and lists
// its fields once, in a table of FieldDesc built with field<&S::member>():
//
//     static const FieldDesc fields[] = {
//         field<&PicState::irr>("irr"),
//         field<&PicState::elcr>("elcr", 2), // appeared in state version 2
//     };
//
// The table drives `info qtree`-style dumps now (dump_state) and the
// migration stream later (sizes, kinds and the version each field appeared
// in are all there). No macros: the member pointer gives the type, the
// size and the offset.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <type_traits>

namespace emu::devices {

enum class FieldKind : uint8_t { Bool, U8, U16, U32, U64, I8, I16, I32, I64, Struct };

struct FieldDesc {
    const char* name;
    size_t offset;   // of the field in its struct
    size_t size;     // of one element
    FieldKind kind;
    int version = 1; // state version that added the field
    size_t count = 1; // > 1: a std::array of `count` elements, `size` apart
    std::span<const FieldDesc> sub{}; // FieldKind::Struct: the element's table
};

namespace detail {

template <class T>
constexpr FieldKind scalar_kind()
{
    if constexpr (std::is_same_v<T, bool>)
        return FieldKind::Bool;
    else if constexpr (std::is_enum_v<T>)
        return scalar_kind<std::underlying_type_t<T>>();
    else if constexpr (std::is_integral_v<T> && std::is_signed_v<T>)
        return sizeof(T) == 1 ? FieldKind::I8 : sizeof(T) == 2 ? FieldKind::I16 : sizeof(T) == 4 ? FieldKind::I32 : FieldKind::I64;
    else if constexpr (std::is_integral_v<T>)
        return sizeof(T) == 1 ? FieldKind::U8 : sizeof(T) == 2 ? FieldKind::U16 : sizeof(T) == 4 ? FieldKind::U32 : FieldKind::U64;
    else
        return FieldKind::Struct;
}

template <class T>
struct ArrayInfo {
    using Element = T;
    static constexpr size_t count = 1;
};
template <class T, size_t N>
struct ArrayInfo<std::array<T, N>> {
    using Element = T;
    static constexpr size_t count = N;
};

template <class S, class T>
size_t offset_of(T S::*member)
{
    static const S probe{};
    return size_t(reinterpret_cast<const char*>(&(probe.*member)) - reinterpret_cast<const char*>(&probe));
}

template <class>
struct MemberTraits;
template <class S, class T>
struct MemberTraits<T S::*> {
    using Struct = S;
    using Type = T;
};

} // namespace detail

// A scalar or an array of scalars.
template <auto Member>
FieldDesc field(const char* name, int version = 1)
{
    using Type = typename detail::MemberTraits<decltype(Member)>::Type;
    using Info = detail::ArrayInfo<Type>;
    using Element = typename Info::Element;
    static_assert(detail::scalar_kind<Element>() != FieldKind::Struct, "nested state needs its field table");
    return FieldDesc{name, detail::offset_of(Member), sizeof(Element), detail::scalar_kind<Element>(), version,
                     Info::count, {}};
}

// A nested state struct, or an array of them, described by `sub`.
template <auto Member>
FieldDesc field(const char* name, std::span<const FieldDesc> sub, int version = 1)
{
    using Type = typename detail::MemberTraits<decltype(Member)>::Type;
    using Info = detail::ArrayInfo<Type>;
    return FieldDesc{name, detail::offset_of(Member), sizeof(typename Info::Element), FieldKind::Struct, version,
                     Info::count, sub};
}

// Reads one scalar element as a 64-bit value (sign-extended for signed kinds).
inline uint64_t read_field(const FieldDesc& f, const void* state, size_t index = 0)
{
    const char* p = static_cast<const char*>(state) + f.offset + index * f.size;
    auto load = [p]<class T>(T) {
        T v;
        std::memcpy(&v, p, sizeof v);
        return v;
    };
    switch (f.kind) {
    case FieldKind::Bool: return load(bool{}) ? 1 : 0;
    case FieldKind::U8: return load(uint8_t{});
    case FieldKind::U16: return load(uint16_t{});
    case FieldKind::U32: return load(uint32_t{});
    case FieldKind::U64: return load(uint64_t{});
    case FieldKind::I8: return uint64_t(int64_t(load(int8_t{})));
    case FieldKind::I16: return uint64_t(int64_t(load(int16_t{})));
    case FieldKind::I32: return uint64_t(int64_t(load(int32_t{})));
    case FieldKind::I64: return uint64_t(load(int64_t{}));
    case FieldKind::Struct: break;
    }
    return 0;
}

// One line per field, "name=value"; arrays "name[i]=value", nested structs
// "outer.inner=value". Bools print 0/1, unsigned fields hex, signed decimal;
// byte arrays longer than 8 print as one hex string.
inline std::string dump_state(std::span<const FieldDesc> fields, const void* state, const std::string& prefix = {})
{
    std::string out;
    for (const FieldDesc& f : fields) {
        if (f.kind == FieldKind::U8 && f.count > 8) { // byte buffers: one hex line
            out += prefix + f.name + "=";
            for (size_t i = 0; i < f.count; ++i) {
                char buf[4];
                std::snprintf(buf, sizeof buf, "%02x", unsigned(read_field(f, state, i)));
                out += buf;
            }
            out += "\n";
            continue;
        }
        for (size_t i = 0; i < f.count; ++i) {
            std::string name = prefix + f.name;
            if (f.count > 1)
                name += "[" + std::to_string(i) + "]";
            if (f.kind == FieldKind::Struct) {
                const char* element = static_cast<const char*>(state) + f.offset + i * f.size;
                out += dump_state(f.sub, element, name + ".");
                continue;
            }
            uint64_t v = read_field(f, state, i);
            char buf[32];
            switch (f.kind) {
            case FieldKind::Bool: std::snprintf(buf, sizeof buf, "%u", unsigned(v)); break;
            case FieldKind::I8:
            case FieldKind::I16:
            case FieldKind::I32:
            case FieldKind::I64: std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v)); break;
            default: std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v)); break;
            }
            out += name + "=" + buf + "\n";
        }
    }
    return out;
}

} // namespace emu::devices

// devices/acpi/aml.cpp — AML encodings (ACPI specification, "ACPI Machine
// Language (AML) Specification" and "Resource Data Types for ACPI").
#include "devices/acpi/aml.h"

#include <cassert>

namespace emu::devices::acpi::aml {

namespace {

constexpr uint8_t kZeroOp = 0x00, kOneOp = 0x01, kOnesOp = 0xff;
constexpr uint8_t kBytePrefix = 0x0a, kWordPrefix = 0x0b, kDWordPrefix = 0x0c, kStringPrefix = 0x0d,
                  kQWordPrefix = 0x0e;
constexpr uint8_t kNameOp = 0x08, kScopeOp = 0x10, kBufferOp = 0x11, kPackageOp = 0x12, kVarPackageOp = 0x13,
                  kMethodOp = 0x14;
constexpr uint8_t kExtOpPrefix = 0x5b, kDeviceOp = 0x82;
constexpr uint8_t kLocal0Op = 0x60, kArg0Op = 0x68, kStoreOp = 0x70;
constexpr uint8_t kIfOp = 0xa0, kElseOp = 0xa1, kReturnOp = 0xa4;
constexpr uint8_t kRootChar = '\\', kParentPrefixChar = '^', kDualNamePrefix = 0x2e, kMultiNamePrefix = 0x2f;

void append(Bytes& out, const Bytes& more) { out.insert(out.end(), more.begin(), more.end()); }

void append_le(Bytes& out, uint64_t value, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; ++i)
        out.push_back(uint8_t(value >> 8 * i));
}

Bytes join(const TermList& terms)
{
    Bytes out;
    for (const Bytes& t : terms)
        append(out, t);
    return out;
}

// Opcode bytes, PkgLength, then the payload.
Bytes with_length(std::initializer_list<uint8_t> opcode, const Bytes& payload)
{
    Bytes out(opcode);
    append(out, pkg_length(payload.size()));
    append(out, payload);
    return out;
}

[[maybe_unused]] bool name_char(char c, bool lead)
{
    return (c >= 'A' && c <= 'Z') || c == '_' || (!lead && c >= '0' && c <= '9');
}

void append_segment(Bytes& out, std::string_view seg)
{
    assert(!seg.empty() && seg.size() <= 4);
    for (size_t i = 0; i < 4; ++i) {
        char c = i < seg.size() ? seg[i] : '_';
        assert(name_char(c, i == 0));
        out.push_back(uint8_t(c));
    }
}

} // namespace

Bytes pkg_length(size_t payload)
{
    // The encoded length includes the PkgLength bytes themselves.
    for (unsigned n = 1; n <= 4; ++n) {
        size_t total = payload + n;
        if (n == 1 && total <= 0x3f)
            return {uint8_t(total)};
        if (n > 1 && total < (size_t(1) << (4 + 8 * (n - 1)))) {
            Bytes out{uint8_t((n - 1) << 6 | (total & 0x0f))};
            for (unsigned i = 1; i < n; ++i)
                out.push_back(uint8_t(total >> (4 + 8 * (i - 1))));
            return out;
        }
    }
    assert(!"AML package longer than 2^28 bytes");
    return {};
}

Bytes name_string(std::string_view path)
{
    Bytes out;
    size_t i = 0;
    if (i < path.size() && path[i] == '\\') {
        out.push_back(kRootChar);
        ++i;
    } else {
        while (i < path.size() && path[i] == '^') {
            out.push_back(kParentPrefixChar);
            ++i;
        }
    }
    std::vector<std::string_view> segs;
    while (i < path.size()) {
        size_t dot = path.find('.', i);
        if (dot == std::string_view::npos)
            dot = path.size();
        segs.push_back(path.substr(i, dot - i));
        i = dot + 1;
        assert(dot + 1 != path.size()); // no trailing dot
    }
    if (segs.empty()) {
        out.push_back(0x00); // NullName
    } else if (segs.size() == 2) {
        out.push_back(kDualNamePrefix);
    } else if (segs.size() > 2) {
        assert(segs.size() <= 255);
        out.push_back(kMultiNamePrefix);
        out.push_back(uint8_t(segs.size()));
    }
    for (std::string_view s : segs)
        append_segment(out, s);
    return out;
}

Bytes integer(uint64_t value)
{
    if (value == 0)
        return {kZeroOp};
    if (value == 1)
        return {kOneOp};
    if (value == ~uint64_t(0))
        return {kOnesOp};
    Bytes out;
    if (value <= 0xff) {
        out.push_back(kBytePrefix);
        append_le(out, value, 1);
    } else if (value <= 0xffff) {
        out.push_back(kWordPrefix);
        append_le(out, value, 2);
    } else if (value <= 0xffffffff) {
        out.push_back(kDWordPrefix);
        append_le(out, value, 4);
    } else {
        out.push_back(kQWordPrefix);
        append_le(out, value, 8);
    }
    return out;
}

Bytes string(std::string_view text)
{
    Bytes out{kStringPrefix};
    for (char c : text) {
        assert(c > 0 && c < 0x80);
        out.push_back(uint8_t(c));
    }
    out.push_back(0);
    return out;
}

Bytes eisa_id(std::string_view id)
{
    assert(id.size() == 7);
    auto letter = [&](size_t i) {
        assert(id[i] >= 'A' && id[i] <= 'Z');
        return uint32_t(id[i] - 0x40) & 0x1f;
    };
    auto hex = [&](size_t i) {
        char c = id[i];
        assert((c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'));
        return uint32_t(c <= '9' ? c - '0' : c - 'A' + 10);
    };
    // Three 5-bit letters then four hex digits, most significant first,
    // stored as a big-endian dword.
    uint32_t be = letter(0) << 26 | letter(1) << 21 | letter(2) << 16 | hex(3) << 12 | hex(4) << 8 | hex(5) << 4 |
                  hex(6);
    uint32_t value = __builtin_bswap32(be);
    Bytes out{kDWordPrefix};
    append_le(out, value, 4);
    return out;
}

Bytes buffer(std::span<const uint8_t> bytes)
{
    Bytes payload = integer(bytes.size());
    payload.insert(payload.end(), bytes.begin(), bytes.end());
    return with_length({kBufferOp}, payload);
}

Bytes package(const TermList& elements)
{
    if (elements.size() <= 255) {
        Bytes payload{uint8_t(elements.size())};
        append(payload, join(elements));
        return with_length({kPackageOp}, payload);
    }
    Bytes payload = integer(elements.size());
    append(payload, join(elements));
    return with_length({kVarPackageOp}, payload);
}

Bytes name(std::string_view path, const Bytes& object)
{
    Bytes out{kNameOp};
    append(out, name_string(path));
    append(out, object);
    return out;
}

Bytes scope(std::string_view path, const TermList& body)
{
    Bytes payload = name_string(path);
    append(payload, join(body));
    return with_length({kScopeOp}, payload);
}

Bytes device(std::string_view path, const TermList& body)
{
    Bytes payload = name_string(path);
    append(payload, join(body));
    return with_length({kExtOpPrefix, kDeviceOp}, payload);
}

Bytes method(std::string_view path, unsigned args, bool serialized, const TermList& body)
{
    assert(args <= 7);
    Bytes payload = name_string(path);
    payload.push_back(uint8_t(args | (serialized ? 0x08 : 0x00))); // sync level 0
    append(payload, join(body));
    return with_length({kMethodOp}, payload);
}

Bytes return_value(const Bytes& value)
{
    Bytes out{kReturnOp};
    append(out, value);
    return out;
}

Bytes store(const Bytes& source, const Bytes& target)
{
    Bytes out{kStoreOp};
    append(out, source);
    append(out, target);
    return out;
}

Bytes if_then(const Bytes& predicate, const TermList& body)
{
    Bytes payload = predicate;
    append(payload, join(body));
    return with_length({kIfOp}, payload);
}

Bytes else_then(const TermList& body) { return with_length({kElseOp}, join(body)); }

Bytes arg(unsigned n)
{
    assert(n <= 6);
    return {uint8_t(kArg0Op + n)};
}

Bytes local(unsigned n)
{
    assert(n <= 7);
    return {uint8_t(kLocal0Op + n)};
}

// ---- resource templates --------------------------------------------------

namespace {

// Large item names.
constexpr uint8_t kMemory32Fixed = 0x06, kDWordAddress = 0x07, kWordAddress = 0x08, kQWordAddress = 0x0a;
// Address space resource types.
constexpr uint8_t kTypeMemory = 0, kTypeIo = 1, kTypeBus = 2;
constexpr uint8_t kMinFixed = 0x04, kMaxFixed = 0x08;
constexpr uint8_t kIoEntireRange = 0x03;

uint8_t memory_flags(bool cacheable, bool read_write)
{
    return uint8_t((read_write ? 0x01 : 0x00) | (cacheable ? 0x02 : 0x00));
}

} // namespace

void ResourceTemplate::address_space(uint8_t item, uint8_t type, uint8_t type_flags, unsigned width, uint64_t min,
                                     uint64_t max)
{
    assert(min <= max);
    unsigned data_len = 3 + 5 * width; // type, flags, type flags; granularity, min, max, translation, length
    m_bytes.push_back(uint8_t(0x80 | item));
    append_le(m_bytes, data_len, 2);
    m_bytes.push_back(type);
    m_bytes.push_back(kMinFixed | kMaxFixed); // ResourceProducer, PosDecode
    m_bytes.push_back(type_flags);
    append_le(m_bytes, 0, width);   // granularity
    append_le(m_bytes, min, width); // minimum
    append_le(m_bytes, max, width); // maximum
    append_le(m_bytes, 0, width);   // translation offset
    append_le(m_bytes, max - min + 1, width);
}

ResourceTemplate& ResourceTemplate::word_bus_number(uint16_t min, uint16_t max)
{
    address_space(kWordAddress, kTypeBus, 0, 2, min, max);
    return *this;
}

ResourceTemplate& ResourceTemplate::word_io(uint16_t min, uint16_t max)
{
    address_space(kWordAddress, kTypeIo, kIoEntireRange, 2, min, max);
    return *this;
}

ResourceTemplate& ResourceTemplate::dword_io(uint32_t min, uint32_t max)
{
    address_space(kDWordAddress, kTypeIo, kIoEntireRange, 4, min, max);
    return *this;
}

ResourceTemplate& ResourceTemplate::dword_memory(uint32_t min, uint32_t max, bool cacheable, bool read_write)
{
    address_space(kDWordAddress, kTypeMemory, memory_flags(cacheable, read_write), 4, min, max);
    return *this;
}

ResourceTemplate& ResourceTemplate::qword_memory(uint64_t min, uint64_t max, bool cacheable, bool read_write)
{
    address_space(kQWordAddress, kTypeMemory, memory_flags(cacheable, read_write), 8, min, max);
    return *this;
}

ResourceTemplate& ResourceTemplate::io(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length)
{
    m_bytes.push_back(0x47); // small item 0x08, 7 bytes
    m_bytes.push_back(0x01); // Decode16
    append_le(m_bytes, min, 2);
    append_le(m_bytes, max, 2);
    m_bytes.push_back(alignment);
    m_bytes.push_back(length);
    return *this;
}

ResourceTemplate& ResourceTemplate::irq_no_flags(std::initializer_list<unsigned> irqs)
{
    uint16_t mask = 0;
    for (unsigned irq : irqs) {
        assert(irq < 16);
        mask = uint16_t(mask | 1u << irq);
    }
    m_bytes.push_back(0x22); // small item 0x04, 2 bytes: no information byte
    append_le(m_bytes, mask, 2);
    return *this;
}

ResourceTemplate& ResourceTemplate::memory32_fixed(uint32_t base, uint32_t length, bool read_write)
{
    m_bytes.push_back(uint8_t(0x80 | kMemory32Fixed));
    append_le(m_bytes, 9, 2);
    m_bytes.push_back(read_write ? 0x01 : 0x00);
    append_le(m_bytes, base, 4);
    append_le(m_bytes, length, 4);
    return *this;
}

Bytes ResourceTemplate::bytes() const
{
    Bytes out = m_bytes;
    out.push_back(0x79); // end tag, small item 0x0f, 1 byte
    uint8_t sum = 0;
    for (uint8_t b : out)
        sum = uint8_t(sum + b);
    out.push_back(uint8_t(-sum));
    return out;
}

Bytes ResourceTemplate::buffer() const { return aml::buffer(bytes()); }

} // namespace emu::devices::acpi::aml

// devices/acpi/aml.h — a small builder of AML byte code (the ACPI Machine
// Language of the DSDT/SSDT), enough for a PC's static namespace.
//
// Every function returns the encoded bytes of one term; containers (Scope,
// Device, Method, If, Package, Buffer) take the encoded bytes of their
// children and prefix their PkgLength. Encodings follow the ACPI
// specification's AML grammar (chapter 20):
//  - names: "\_SB.PCI0", "^FOO", "_HID"; segments shorter than four
//    characters are padded with '_' (the ASL compiler does the same);
//    NameSeg, DualNamePrefix 0x2e, MultiNamePrefix 0x2f, NullName 0;
//  - integers in the shortest form: ZeroOp, OneOp, OnesOp (all 64 bits),
//    BytePrefix 0x0a, WordPrefix 0x0b, DWordPrefix 0x0c, QWordPrefix 0x0e;
//  - PkgLength in 1 to 4 bytes (the length counts its own bytes);
//  - resource templates: small and large descriptors, closed by an end tag
//    whose checksum makes the template's bytes sum to zero.
// Malformed names or out-of-range arguments are bugs in emud: asserted.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string_view>
#include <vector>

namespace emu::devices::acpi::aml {

using Bytes = std::vector<uint8_t>;
using TermList = std::vector<Bytes>;

// The PkgLength for `payload` bytes that follow it.
Bytes pkg_length(size_t payload);
Bytes name_string(std::string_view path);

Bytes integer(uint64_t value);
Bytes string(std::string_view text);
// "PNP0A03" as the compressed 32-bit EISA ID integer.
Bytes eisa_id(std::string_view id);
Bytes buffer(std::span<const uint8_t> bytes);
// Package (up to 255 elements) or VarPackage (more).
Bytes package(const TermList& elements);

Bytes name(std::string_view path, const Bytes& object);
Bytes scope(std::string_view path, const TermList& body);
Bytes device(std::string_view path, const TermList& body);
Bytes method(std::string_view path, unsigned args, bool serialized, const TermList& body);

// Statements and operands.
Bytes return_value(const Bytes& value);
Bytes store(const Bytes& source, const Bytes& target);
Bytes if_then(const Bytes& predicate, const TermList& body);
Bytes else_then(const TermList& body);
Bytes arg(unsigned n);   // Arg0-Arg6
Bytes local(unsigned n); // Local0-Local7

// ResourceTemplate () { ... } as descriptor bytes; `buffer()` wraps them in
// an AML Buffer, as `Name (_CRS, ResourceTemplate () {...})` needs. Address
// space descriptors are bridge windows: ResourceProducer, PosDecode,
// MinFixed, MaxFixed, granularity and translation 0.
class ResourceTemplate {
public:
    ResourceTemplate& word_bus_number(uint16_t min, uint16_t max);
    ResourceTemplate& word_io(uint16_t min, uint16_t max);
    ResourceTemplate& dword_io(uint32_t min, uint32_t max);
    ResourceTemplate& dword_memory(uint32_t min, uint32_t max, bool cacheable, bool read_write = true);
    ResourceTemplate& qword_memory(uint64_t min, uint64_t max, bool cacheable, bool read_write = true);
    // IO (Decode16, min, max, alignment, length)
    ResourceTemplate& io(uint16_t min, uint16_t max, uint8_t alignment, uint8_t length);
    // IRQNoFlags () {irqs...}
    ResourceTemplate& irq_no_flags(std::initializer_list<unsigned> irqs);
    // Memory32Fixed (ReadWrite/ReadOnly, base, length)
    ResourceTemplate& memory32_fixed(uint32_t base, uint32_t length, bool read_write = true);

    Bytes bytes() const; // the descriptors and the end tag
    Bytes buffer() const;

private:
    void address_space(uint8_t item, uint8_t type, uint8_t type_flags, unsigned width, uint64_t min, uint64_t max);
    Bytes m_bytes;
};

} // namespace emu::devices::acpi::aml

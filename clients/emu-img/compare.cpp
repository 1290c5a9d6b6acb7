// emu-img compare — are two images' contents identical? Exit 0 identical,
// 1 different, 2 error; -s (strict) also fails on size or allocation
// differences.
#include "clients/emu-img/common.h"

#include <algorithm>
#include <cstring>
#include <fmt/format.h>
#include <getopt.h>

namespace emu::img {

namespace {

constexpr uint64_t k_chunk = 1u << 20;

// Offset of the first differing 512-byte sector, or nullopt.
std::optional<uint64_t> first_difference(const uint8_t* a, const uint8_t* b, uint64_t n)
{
    for (uint64_t pos = 0; pos < n; pos += 512) {
        uint64_t len = std::min<uint64_t>(512, n - pos);
        if (std::memcmp(a + pos, b + pos, len) != 0)
            return pos;
    }
    return std::nullopt;
}

std::optional<uint64_t> first_nonzero(const uint8_t* a, uint64_t n)
{
    for (uint64_t pos = 0; pos < n; pos += 512) {
        uint64_t len = std::min<uint64_t>(512, n - pos);
        for (uint64_t i = 0; i < len; i++)
            if (a[pos + i])
                return pos;
    }
    return std::nullopt;
}

} // namespace

int cmd_compare(int argc, char** argv)
{
    OpenFlags f1, f2;
    bool strict = false, quiet = false, progress = false;
    enum { OptObject = 256, OptImageOpts };
    static const option long_opts[] = {{"help", no_argument, nullptr, 'h'},
                                       {"object", required_argument, nullptr, OptObject},
                                       {"image-opts", no_argument, nullptr, OptImageOpts},
                                       {"force-share", no_argument, nullptr, 'U'},
                                       {nullptr, 0, nullptr, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":hf:F:T:pqsU", long_opts, nullptr)) != -1) {
        switch (c) {
        case 'f': f1.format = optarg; break;
        case 'F': f2.format = optarg; break;
        case 'p': progress = true; break;
        case 'q': quiet = true; break;
        case 's': strict = true; break;
        case 'U': f1.force_share = f2.force_share = true; break;
        case 'T': {
            auto m = storage::parse_cache_mode(optarg);
            if (!m) {
                error(m.error().message);
                return 2;
            }
            f1.cache = f2.cache = *m;
            break;
        }
        case 'h':
            std::printf("usage: emu-img compare [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] filename1 filename2\n");
            return 0;
        case OptObject: case OptImageOpts: error(fmt::format("{}: not supported yet", argv[optind - 1])); return 2;
        case ':': error(fmt::format("option '{}' requires an argument", argv[optind - 1])); return 2;
        default: error(fmt::format("unrecognized option '{}'", argv[optind - 1])); return 2;
        }
    }
    if (argc - optind != 2) {
        error("Expecting two image file names");
        return 2;
    }
    (void)progress;
    auto a = open_backend(argv[optind], f1);
    if (!a) {
        error(a.error().message);
        return 2;
    }
    auto b = open_backend(argv[optind + 1], f2);
    if (!b) {
        error(b.error().message);
        return 2;
    }
    auto say = [&](const std::string& text) {
        if (!quiet)
            std::printf("%s\n", text.c_str());
    };
    const uint64_t size1 = (*a)->size(), size2 = (*b)->size();
    if (size1 != size2) {
        if (strict) {
            say("Strict mode: Image size mismatch!");
            return 1;
        }
        say("Warning: Image size mismatch!");
    }
    std::vector<uint8_t> b1(k_chunk), b2(k_chunk);
    const uint64_t common = std::min(size1, size2);
    for (uint64_t off = 0; off < common;) {
        uint64_t n = std::min(k_chunk, common - off);
        auto s1 = chain_status((*a)->driver(), off, n);
        auto s2 = chain_status((*b)->driver(), off, n);
        if (!s1 || !s2) {
            error(fmt::format("error while reading block status at offset {}: {}", off,
                              (!s1 ? s1.error() : s2.error()).message));
            return 2;
        }
        n = std::min(s1->status.length, s2->status.length);
        bool alloc1 = s1->status.allocated, alloc2 = s2->status.allocated;
        if (strict && alloc1 != alloc2) {
            say(fmt::format("Strict mode: Offset {} block status mismatch!", off));
            return 1;
        }
        bool zero1 = s1->status.zero && !s1->status.data, zero2 = s2->status.zero && !s2->status.data;
        if (!(zero1 && zero2)) {
            if (auto r = (*a)->read(off, std::span<uint8_t>(b1.data(), n)); !r) {
                error(fmt::format("Error while reading offset {} of {}: {}", off, argv[optind], r.error().message));
                return 2;
            }
            if (auto r = (*b)->read(off, std::span<uint8_t>(b2.data(), n)); !r) {
                error(fmt::format("Error while reading offset {} of {}: {}", off, argv[optind + 1], r.error().message));
                return 2;
            }
            if (auto d = first_difference(b1.data(), b2.data(), n)) {
                say(fmt::format("Content mismatch at offset {}!", off + *d));
                return 1;
            }
        }
        off += n;
    }
    // The longer image must read as zeroes past the shorter one.
    if (size1 != size2) {
        auto& longer = size1 > size2 ? *a : *b;
        uint64_t end = std::max(size1, size2);
        for (uint64_t off = common; off < end;) {
            uint64_t n = std::min(k_chunk, end - off);
            auto s = chain_status(longer->driver(), off, n);
            if (!s) {
                error(s.error().message);
                return 2;
            }
            n = s->status.length;
            if (!(s->status.zero && !s->status.data)) {
                if (auto r = longer->read(off, std::span<uint8_t>(b1.data(), n)); !r) {
                    error(fmt::format("Error while reading offset {}: {}", off, r.error().message));
                    return 2;
                }
                if (auto d = first_nonzero(b1.data(), n)) {
                    say(fmt::format("Content mismatch at offset {}!", off + *d));
                    return 1;
                }
            }
            off += n;
        }
    }
    say("Images are identical.");
    return 0;
}

} // namespace emu::img

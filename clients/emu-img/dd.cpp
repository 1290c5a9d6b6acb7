// emu-img dd — copy an image into a new one block by block, with dd's
// operands: bs=, count=, skip=, if=, of=. As qemu-img, count= ends the input
// at count*bs bytes (skip= starts inside that range), and every block is
// written, zeroes included.
#include "clients/emu-img/common.h"

#include <climits>
#include <fmt/format.h>
#include <getopt.h>

namespace emu::img {

int cmd_dd(int argc, char** argv)
{
    OpenFlags in_flags;
    std::string out_fmt = "raw";
    enum { OptImageOpts = 256 };
    static const option long_opts[] = {{"help", no_argument, nullptr, 'h'},
                                       {"image-opts", no_argument, nullptr, OptImageOpts},
                                       {"force-share", no_argument, nullptr, 'U'},
                                       {nullptr, 0, nullptr, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":hf:O:U", long_opts, nullptr)) != -1) {
        switch (c) {
        case 'f': in_flags.format = optarg; break;
        case 'O': out_fmt = optarg; break;
        case 'U': in_flags.force_share = true; break;
        case 'h':
            std::printf("usage: emu-img dd [-U] [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks] "
                        "[skip=blocks] if=input of=output\n");
            return 0;
        case OptImageOpts: error("--image-opts: not supported yet"); return 1;
        case ':': error(fmt::format("option '{}' requires an argument", argv[optind - 1])); return 1;
        default: error(fmt::format("unrecognized option '{}'", argv[optind - 1])); return 1;
        }
    }
    uint64_t bs = 512;
    std::optional<uint64_t> count, skip;
    std::string in, out;
    const char* suffixes = " specified. You may use k, M, G, T, P or E suffixes for\nemu-img: kilobytes, megabytes, "
                           "gigabytes, terabytes, petabytes and exabytes.";
    for (int i = optind; i < argc; i++) {
        std::string arg = argv[i];
        auto eq = arg.find('=');
        std::string key = arg.substr(0, eq);
        std::string value = eq == std::string::npos ? "" : arg.substr(eq + 1);
        if (eq == std::string::npos) {
            error(fmt::format("unrecognized operand {}", arg));
            return 1;
        }
        if (key == "bs") {
            auto v = parse_size(value);
            if (!v || *v == 0 || *v > uint64_t(INT_MAX)) {
                error(fmt::format("Invalid bs specified. Must be between 1 and {}.", INT_MAX));
                return 1;
            }
            bs = *v;
        } else if (key == "count" || key == "skip") {
            auto v = parse_size(value);
            if (!v) {
                error(fmt::format("Invalid {}{}", key, suffixes));
                return 1;
            }
            (key == "count" ? count : skip) = *v;
        } else if (key == "if") {
            in = value;
        } else if (key == "of") {
            out = value;
        } else {
            error(fmt::format("unrecognized operand {}", key));
            return 1;
        }
    }
    if (in.empty() || out.empty()) {
        error("Must specify both input and output files");
        return 1;
    }
    auto src = open_backend(in, in_flags);
    if (!src) {
        error(src.error().message);
        return 1;
    }
    uint64_t size = (*src)->size();
    if (count && *count <= size / bs)
        size = *count * bs;
    uint64_t in_pos = 0;
    if (skip) {
        if (*skip > size / bs) {
            // As qemu-img: reported, and then nothing is copied.
            error(fmt::format("{}: cannot skip to specified offset", in));
            in_pos = size;
        } else {
            in_pos = *skip * bs;
        }
    }
    OptionList none;
    if (int rc = create_image(out_fmt, out, none, size - in_pos, true, true, nullptr); rc != 0)
        return rc;
    OpenFlags out_flags;
    out_flags.format = out_fmt;
    out_flags.read_only = false;
    out_flags.cache = storage::CacheMode::Unsafe;
    auto dst = open_backend(out, out_flags);
    if (!dst) {
        error(dst.error().message);
        return 1;
    }
    std::vector<uint8_t> buf(bs);
    for (uint64_t out_pos = 0; in_pos < size;) {
        const uint64_t n = std::min(bs, size - in_pos);
        if (auto r = (*src)->read(in_pos, std::span<uint8_t>(buf.data(), n)); !r) {
            error(fmt::format("error while reading from input image file: {}", r.error().message));
            return 1;
        }
        if (auto r = (*dst)->write(out_pos, std::span<const uint8_t>(buf.data(), n)); !r) {
            error(fmt::format("error while writing to output image file: {}", r.error().message));
            return 1;
        }
        in_pos += n;
        out_pos += n;
    }
    if (auto r = (*dst)->close(); !r) {
        error(r.error().message);
        return 1;
    }
    return 0;
}

} // namespace emu::img

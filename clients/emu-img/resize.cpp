// emu-img resize — change an image's virtual size: absolute, +N or -N;
// shrinking needs --shrink; --preallocation for the new area.
#include "clients/emu-img/common.h"

#include <fmt/format.h>
#include <getopt.h>

namespace emu::img {

namespace {

const char* const k_size_help = "Parameter 'size' expects a non-negative number below 2^64\nOptional suffix k, M, G, "
                                "T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.";

} // namespace

int cmd_resize(int argc, char** argv)
{
    // The size goes last and may start with '-': take it before getopt sees it.
    if (argc < 3) {
        error("Not enough arguments\nTry 'emu-img --help' for more information");
        return 1;
    }
    std::string size_text = argv[argc - 1];
    argc--;
    OpenFlags flags;
    flags.read_only = false;
    bool quiet = false, shrink = false;
    storage::Preallocation prealloc = storage::Preallocation::Off;
    enum { OptObject = 256, OptImageOpts, OptPrealloc, OptShrink };
    static const option long_opts[] = {{"help", no_argument, nullptr, 'h'},
                                       {"object", required_argument, nullptr, OptObject},
                                       {"image-opts", no_argument, nullptr, OptImageOpts},
                                       {"preallocation", required_argument, nullptr, OptPrealloc},
                                       {"shrink", no_argument, nullptr, OptShrink},
                                       {nullptr, 0, nullptr, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":f:hq", long_opts, nullptr)) != -1) {
        switch (c) {
        case 'f': flags.format = optarg; break;
        case 'q': quiet = true; break;
        case OptShrink: shrink = true; break;
        case OptPrealloc: {
            auto p = storage::parse_preallocation(optarg);
            if (!p) {
                error(fmt::format("Invalid preallocation mode '{}'", optarg));
                return 1;
            }
            prealloc = *p;
            break;
        }
        case 'h':
            std::printf("usage: emu-img resize [-f fmt] [--preallocation=prealloc] [-q] [--shrink] filename "
                        "[+ | -]size\n");
            return 0;
        case OptObject: case OptImageOpts: error(fmt::format("{}: not supported yet", argv[optind - 1])); return 1;
        case ':': error(fmt::format("option '{}' requires an argument", argv[optind - 1])); return 1;
        default: error(fmt::format("unrecognized option '{}'", argv[optind - 1])); return 1;
        }
    }
    if (optind != argc - 1) {
        error("Expecting image file name and size\nTry 'emu-img --help' for more information");
        return 1;
    }
    const std::string filename = argv[optind];
    int relative = 0;
    if (size_text[0] == '+' || size_text[0] == '-') {
        relative = size_text[0] == '+' ? 1 : -1;
        size_text.erase(0, 1);
    }
    auto amount = parse_size(size_text);
    if (!amount) {
        error(k_size_help);
        return 1;
    }
    auto be = open_backend(filename, flags);
    if (!be) {
        error(be.error().message);
        return 1;
    }
    storage::BlockDriver& drv = (*be)->driver();
    const uint64_t current = drv.size();
    uint64_t size = *amount;
    if (relative > 0) {
        size = current + *amount;
    } else if (relative < 0) {
        if (*amount >= current) {
            error("New image size must be positive");
            return 1;
        }
        size = current - *amount;
    }
    if (size > uint64_t(INT64_MAX)) {
        error("Image size must be less than 8 EiB!");
        return 1;
    }
    if (size < current && prealloc != storage::Preallocation::Off) {
        error("Preallocation can only be used for growing images");
        return 1;
    }
    if (size < current && !shrink) {
        error("Use the --shrink option to perform a shrink operation.");
        error("warning: Shrinking an image will delete all data beyond the shrunken image's end. Before performing "
              "such an operation, make sure there is no important data there.");
        return 1;
    }
    if (auto r = drv.resize(size, prealloc); !r) {
        error(r.error().message);
        return 1;
    }
    if (auto r = (*be)->close(); !r) {
        error(r.error().message);
        return 1;
    }
    if (!quiet)
        std::printf("Image resized.\n");
    return 0;
}

} // namespace emu::img

// emu-img map — where each range of the image lives: JSON (one entry per
// extent, qemu-img's keys) or the human table of data mappings.
#include "clients/emu-img/common.h"

#include <fmt/format.h>
#include <getopt.h>

namespace emu::img {

namespace {

struct MapEntry {
    uint64_t start = 0;
    uint64_t length = 0;
    int depth = 0;
    bool present = false;
    bool zero = false;
    bool data = false;
    std::optional<uint64_t> offset;
    std::string filename;
};

bool mergeable(const MapEntry& a, const MapEntry& b)
{
    if (a.depth != b.depth || a.present != b.present || a.zero != b.zero || a.data != b.data ||
        a.filename != b.filename || a.offset.has_value() != b.offset.has_value())
        return false;
    return !a.offset || *a.offset + a.length == *b.offset;
}

std::string hex_or_zero(uint64_t v)
{
    return v ? fmt::format("{:#x}", v) : "0";
}

// Prints an entry; returns false for data without an offset in human mode.
bool print_entry(const MapEntry& e, bool json, bool first)
{
    if (json) {
        std::string line = fmt::format("{}{{ \"start\": {}, \"length\": {}, \"depth\": {}, \"present\": {}, \"zero\": {}, "
                                       "\"data\": {}", first ? "[" : ",\n", e.start, e.length, e.depth,
                                       e.present ? "true" : "false", e.zero ? "true" : "false", e.data ? "true" : "false");
        if (e.offset)
            line += fmt::format(", \"offset\": {}", *e.offset);
        line += "}";
        std::fputs(line.c_str(), stdout);
        return true;
    }
    if (e.data && e.offset) {
        std::printf("%-16s%-16s%-16s%s\n", hex_or_zero(e.start).c_str(), hex_or_zero(e.length).c_str(),
                    hex_or_zero(*e.offset).c_str(), e.filename.c_str());
    } else if (e.data) {
        error("File contains external, encrypted or compressed clusters.");
        return false;
    }
    return true;
}

} // namespace

int cmd_map(int argc, char** argv)
{
    OpenFlags flags;
    std::string output = "human";
    uint64_t start = 0;
    std::optional<uint64_t> max_length;
    enum { OptOutput = 256, OptObject, OptImageOpts, OptStart, OptMaxLength };
    static const option long_opts[] = {{"help", no_argument, nullptr, 'h'},
                                       {"format", required_argument, nullptr, 'f'},
                                       {"output", required_argument, nullptr, OptOutput},
                                       {"object", required_argument, nullptr, OptObject},
                                       {"image-opts", no_argument, nullptr, OptImageOpts},
                                       {"force-share", no_argument, nullptr, 'U'},
                                       {"start-offset", required_argument, nullptr, OptStart},
                                       {"max-length", required_argument, nullptr, OptMaxLength},
                                       {nullptr, 0, nullptr, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":f:hU", long_opts, nullptr)) != -1) {
        switch (c) {
        case 'f': flags.format = optarg; break;
        case 'U': flags.force_share = true; break;
        case OptOutput: output = optarg; break;
        case OptStart: {
            auto s = parse_size(optarg);
            if (!s) {
                error(fmt::format("Invalid start offset specified! You may use k, M, G, T, P or E suffixes for "));
                return 1;
            }
            start = *s;
            break;
        }
        case OptMaxLength: {
            auto s = parse_size(optarg);
            if (!s) {
                error("Invalid max length specified! You may use k, M, G, T, P or E suffixes for ");
                return 1;
            }
            max_length = *s;
            break;
        }
        case 'h':
            std::printf("usage: emu-img map [-f fmt] [--start-offset=offset] [--max-length=len] [--output=ofmt] [-U] "
                        "filename\n");
            return 0;
        case OptObject: case OptImageOpts: error(fmt::format("{}: not supported yet", argv[optind - 1])); return 1;
        case ':': error(fmt::format("option '{}' requires an argument", argv[optind - 1])); return 1;
        default: error(fmt::format("unrecognized option '{}'", argv[optind - 1])); return 1;
        }
    }
    if (output != "human" && output != "json") {
        error("--output must be used with human or json as argument.");
        return 1;
    }
    if (optind != argc - 1) {
        error("Expecting one image file name");
        return 1;
    }
    auto be = open_backend(argv[optind], flags);
    if (!be) {
        error(be.error().message);
        return 1;
    }
    storage::BlockDriver& top = (*be)->driver();
    const uint64_t size = top.size();
    uint64_t end = max_length ? std::min(size, start + *max_length) : size;
    const bool json = output == "json";
    if (!json)
        std::printf("%-16s%-16s%-16s%s\n", "Offset", "Length", "Mapped to", "File");
    std::optional<MapEntry> cur;
    bool first = true;
    for (uint64_t off = start; off < end;) {
        auto s = chain_status(top, off, end - off);
        if (!s) {
            error(s.error().message);
            return 1;
        }
        MapEntry e;
        e.start = off;
        e.length = s->status.length;
        e.depth = s->depth;
        e.present = s->status.allocated;
        e.zero = s->status.zero;
        e.data = s->status.data;
        e.offset = s->status.host_offset;
        storage::BlockDriver* file = s->layer->file();
        e.filename = file ? file->filename() : s->layer->filename();
        off += e.length;
        if (cur && mergeable(*cur, e)) {
            cur->length += e.length;
            continue;
        }
        if (cur) {
            if (!print_entry(*cur, json, first))
                return 1;
            first = false;
        }
        cur = e;
    }
    if (cur && !print_entry(*cur, json, first))
        return 1;
    if (json)
        std::printf(first && !cur ? "[]\n" : "]\n");
    return 0;
}

} // namespace emu::img

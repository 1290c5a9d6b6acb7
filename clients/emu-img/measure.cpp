// emu-img measure — how large a new image would be: for a virtual size
// (--size) or for converting an existing image, in any output format we
// create (raw, qcow2 with its -o options).
#include "clients/emu-img/common.h"

#include "storage/qcow2/qcow2.h"

#include <fmt/format.h>
#include <getopt.h>
#include <iostream>

namespace emu::img {

namespace {

// Target options that change the layout; the rest of create's options are accepted and ignored.
bool parse_target(const std::string& format, const OptionList& opts, storage::qcow2::CreateOptions& q)
{
    for (const auto& [key, value] : opts.items) {
        bool ok = true;
        if (key == "size" || (format == "qcow2" && (key == "backing_file" || key == "backing_fmt" ||
                                                    key == "encryption" || key.starts_with("encrypt.")))) {
            continue;
        } else if (key == "preallocation") {
            auto p = storage::parse_preallocation(value);
            ok = p && !(format == "raw" && *p == storage::Preallocation::Metadata);
            if (ok)
                q.preallocation = *p;
        } else if (format != "qcow2") {
            ok = false;
        } else if (key == "compat") {
            ok = value == "0.10" || value == "v2" || value == "1.1" || value == "v3";
            q.version = value == "0.10" || value == "v2" ? 2 : 3;
        } else if (key == "cluster_size") {
            auto s = parse_size(value);
            ok = s && *s <= UINT32_MAX;
            if (ok)
                q.cluster_size = uint32_t(*s);
        } else if (key == "refcount_bits") {
            char* end = nullptr;
            long v = std::strtol(value.c_str(), &end, 10);
            ok = end && !*end && v > 0;
            q.refcount_bits = int(v);
        } else if (key == "extended_l2" || key == "lazy_refcounts") {
            auto b = parse_bool(value);
            ok = b.has_value();
            if (ok && key == "extended_l2")
                q.extended_l2 = *b;
        } else if (key == "compression_type") {
            ok = value == "zlib" || value == "zstd";
        } else {
            ok = false;
        }
        if (!ok) {
            error(fmt::format("Invalid parameter '{}'", key));
            error(fmt::format("Invalid options for file format '{}'", format));
            return false;
        }
    }
    return true;
}

} // namespace

int cmd_measure(int argc, char** argv)
{
    OpenFlags flags;
    std::string out_fmt = "raw", output = "human";
    OptionList opts;
    std::optional<uint64_t> size;
    enum { OptObject = 256, OptImageOpts, OptSize, OptOutput, OptForceShare };
    static const option long_opts[] = {{"help", no_argument, nullptr, 'h'},
                                       {"image-opts", no_argument, nullptr, OptImageOpts},
                                       {"object", required_argument, nullptr, OptObject},
                                       {"output", required_argument, nullptr, OptOutput},
                                       {"size", required_argument, nullptr, OptSize},
                                       {"force-share", no_argument, nullptr, 'U'},
                                       {nullptr, 0, nullptr, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":hf:O:o:l:U", long_opts, nullptr)) != -1) {
        switch (c) {
        case 'f': flags.format = optarg; break;
        case 'O': out_fmt = optarg; break;
        case 'U': flags.force_share = true; break;
        case 'o': {
            std::string err;
            if (!parse_option_list(optarg, opts, err)) {
                error(err);
                return 1;
            }
            break;
        }
        case 'l': error("measure: -l (snapshots) is not supported yet"); return 1;
        case OptSize: {
            auto s = parse_size(optarg);
            if (!s || *s > uint64_t(INT64_MAX)) {
                error("Invalid image size specified. You may use k, M, G, T, P or E suffixes for\nemu-img: kilobytes, "
                      "megabytes, gigabytes, terabytes, petabytes and exabytes.");
                return 1;
            }
            size = *s;
            break;
        }
        case OptOutput: output = optarg; break;
        case 'h':
            std::printf("usage: emu-img measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [-f fmt] "
                        "filename]\n");
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
    if (size && optind < argc) {
        error("--size N cannot be used together with a filename.");
        return 1;
    }
    if (!size && optind != argc - 1) {
        error("Either --size N or one filename must be specified.");
        return 1;
    }
    if (!storage::format_supported(out_fmt)) {
        if (storage::format_known(out_fmt))
            error(fmt::format("Block driver '{}' does not support size measurement", out_fmt));
        else
            error(fmt::format("Unknown file format '{}'", out_fmt));
        return 1;
    }
    if (opts.help) {
        error("Invalid parameter 'help'");
        error(fmt::format("Invalid options for file format '{}'", out_fmt));
        return 1;
    }
    storage::qcow2::CreateOptions q;
    if (!parse_target(out_fmt, opts, q))
        return 1;

    uint64_t virtual_size = size.value_or(0), data_bytes = 0;
    bool bitmaps = false;
    if (!size) {
        auto be = open_backend(argv[optind], flags);
        if (!be) {
            error(be.error().message);
            return 1;
        }
        storage::BlockDriver& src = (*be)->driver();
        virtual_size = src.size();
        bitmaps = src.format_name() == "qcow2" && out_fmt == "qcow2";
        // Target clusters holding anything but zeroes need a data cluster.
        const uint64_t cs = q.cluster_size ? q.cluster_size : 65536;
        uint64_t last_counted = UINT64_MAX;
        for (uint64_t off = 0; off < virtual_size;) {
            auto st = chain_status(src, off, virtual_size - off);
            if (!st) {
                error(st.error().message);
                return 1;
            }
            const uint64_t len = std::max<uint64_t>(st->status.length, 1);
            if (!(st->status.zero && !st->status.data)) {
                uint64_t first = off / cs, last = (off + len - 1) / cs;
                if (first == last_counted)
                    first++;
                if (last >= first)
                    data_bytes += (last - first + 1) * cs;
                last_counted = last;
            }
            off += len;
        }
    }
    uint64_t required, fully;
    if (out_fmt == "raw") {
        fully = required = (virtual_size + 511) & ~uint64_t(511);
    } else {
        q.size = virtual_size;
        auto m = storage::qcow2::measure(q, data_bytes);
        if (!m) {
            error(m.error().message);
            return 1;
        }
        required = m->required;
        fully = m->fully_allocated;
    }
    if (output == "json") {
        ordered_json j;
        if (bitmaps)
            j["bitmaps"] = 0;
        j["required"] = required;
        j["fully-allocated"] = fully;
        std::cout << j.dump(4) << "\n";
    } else {
        std::printf("required size: %llu\nfully allocated size: %llu\n", (unsigned long long)required,
                    (unsigned long long)fully);
        if (bitmaps)
            std::printf("bitmaps size: 0\n");
    }
    return 0;
}

} // namespace emu::img

// emu-img create — new raw and qcow2 images.
#include "clients/emu-img/common.h"

#include <fmt/format.h>
#include <getopt.h>

namespace emu::img {

namespace {

const char* k_raw_help = R"(Supported raw options:
  preallocation=<str>    - Preallocation mode (allowed values: off, falloc, full)
  size=<size>            - Virtual disk size
)";
const char* k_qcow2_help = R"(Supported qcow2 options:
  backing_file=<str>     - File name of a base image
  backing_fmt=<str>      - Image format of the base image
  cluster_size=<size>    - qcow2 cluster size
  compat=<str>           - Compatibility level (v2 [0.10] or v3 [1.1])
  compression_type=<str> - Compression method used for image cluster compression
  extended_l2=<bool (on/off)> - Extended L2 tables (not supported yet)
  lazy_refcounts=<bool (on/off)> - Postpone refcount updates
  preallocation=<str>    - Preallocation mode (allowed values: off, metadata, falloc, full)
  refcount_bits=<num>    - Width of a reference count entry in bits
  size=<size>            - Virtual disk size
)";

} // namespace

// Shared with convert: builds and runs a creation from format, options and size.
int create_image(const std::string& format, const std::string& filename, const OptionList& opts,
                 std::optional<uint64_t> size, bool quiet, bool check_backing, uint64_t* size_out)
{
    namespace st = storage;
    if (!st::format_supported(format)) {
        if (st::format_known(format))
            error(fmt::format("{}: image format '{}' is not supported yet (supported: raw, qcow2)", filename, format));
        else
            error(fmt::format("Unknown file format '{}'", format));
        return 1;
    }
    st::qcow2::CreateOptions q;
    st::Preallocation prealloc = st::Preallocation::Off;
    bool prealloc_set = false, compat_set = false;
    for (const auto& [key, value] : opts.items) {
        auto bad_value = [&](const char* what) {
            error(fmt::format("{}: Parameter '{}' expects {}", filename, key, what));
            return 1;
        };
        if (key == "size") {
            auto s = parse_size(value);
            if (!s)
                return bad_value("a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, "
                                 "mega-, giga-, tera-, peta-\nand exabytes, respectively.");
            size = *s;
        } else if (key == "preallocation") {
            auto p = st::parse_preallocation(value);
            if (!p || (format == "raw" && *p == st::Preallocation::Metadata)) {
                error(fmt::format("{}: Parameter 'preallocation' does not accept value '{}'", filename, value));
                return 1;
            }
            prealloc = *p;
            prealloc_set = true;
        } else if (format == "raw") {
            error(fmt::format("{}: Invalid parameter '{}'", filename, key));
            return 1;
        } else if (key == "compat") {
            if (value == "0.10" || value == "v2")
                q.version = 2;
            else if (value == "1.1" || value == "v3")
                q.version = 3;
            else {
                error(fmt::format("{}: Parameter 'version' does not accept value '{}'", filename, value));
                return 1;
            }
            compat_set = true;
        } else if (key == "backing_file") {
            q.backing_file = value;
        } else if (key == "backing_fmt") {
            q.backing_format = value;
        } else if (key == "cluster_size") {
            auto s = parse_size(value);
            if (!s || *s > UINT32_MAX)
                return bad_value("a size");
            q.cluster_size = uint32_t(*s);
        } else if (key == "lazy_refcounts") {
            auto b = parse_bool(value);
            if (!b)
                return bad_value("'on' or 'off'");
            q.lazy_refcounts = *b;
        } else if (key == "refcount_bits") {
            char* end = nullptr;
            long v = std::strtol(value.c_str(), &end, 10);
            if (!end || *end || v <= 0)
                return bad_value("a number");
            q.refcount_bits = int(v);
        } else if (key == "compression_type") {
            if (value == "zlib")
                q.compression_type = st::qcow2::CompressionType::Zlib;
            else if (value == "zstd")
                q.compression_type = st::qcow2::CompressionType::Zstd;
            else {
                error(fmt::format("{}: Parameter 'compression-type' does not accept value '{}'", filename, value));
                return 1;
            }
        } else if (key == "extended_l2") {
            auto b = parse_bool(value);
            if (!b)
                return bad_value("'on' or 'off'");
            q.extended_l2 = *b;
        } else if (key == "encryption" || key.starts_with("encrypt.") || key == "data_file" || key == "data_file_raw") {
            error(fmt::format("{}: option '{}' is not supported yet", filename, key));
            return 1;
        } else {
            error(fmt::format("{}: Invalid parameter '{}'", filename, key));
            return 1;
        }
    }
    if (format == "qcow2" && !q.backing_file.empty() && q.backing_format.empty()) {
        error(fmt::format("{}: Backing file specified without backing format", filename));
        return 1;
    }
    if (format == "qcow2" && !q.backing_file.empty() && (check_backing || !size)) {
        OpenFlags flags;
        flags.format = q.backing_format;
        flags.force_share = true;
        auto b = open_backend(st::resolve_backing_path(filename, q.backing_file), flags);
        if (!b) {
            error(fmt::format("{}: Could not open backing image: {}", filename, b.error().message));
            return 1;
        }
        if (!size)
            size = (*b)->size();
    }
    if (!size) {
        error("Image creation needs a size parameter");
        return 1;
    }
    if (*size > uint64_t(INT64_MAX)) {
        error("Image size must be less than 8 EiB!");
        return 1;
    }
    if (size_out)
        *size_out = *size;
    if (!quiet) {
        std::string line = fmt::format("Formatting '{}', fmt={}", filename, format);
        if (format == "raw") {
            line += fmt::format(" size={}", *size);
            if (prealloc_set)
                line += fmt::format(" preallocation={}", st::preallocation_name(prealloc));
        } else {
            line += fmt::format(" cluster_size={} extended_l2={}", q.cluster_size, q.extended_l2 ? "on" : "off");
            if (prealloc_set)
                line += fmt::format(" preallocation={}", st::preallocation_name(prealloc));
            line += fmt::format(" compression_type={} size={}",
                                q.compression_type == st::qcow2::CompressionType::Zstd ? "zstd" : "zlib", *size);
            if (compat_set)
                line += fmt::format(" compat={}", q.version == 2 ? "0.10" : "1.1");
            if (!q.backing_file.empty())
                line += fmt::format(" backing_file={} backing_fmt={}", q.backing_file, q.backing_format);
            line += fmt::format(" lazy_refcounts={} refcount_bits={}", q.lazy_refcounts ? "on" : "off",
                                q.refcount_bits);
        }
        std::printf("%s\n", line.c_str());
        std::fflush(stdout);
    }
    st::Result<void> r;
    if (format == "raw") {
        r = st::create_raw(filename, *size, prealloc);
    } else {
        q.size = *size;
        q.preallocation = prealloc;
        r = st::create_qcow2(filename, q);
    }
    if (!r) {
        error(fmt::format("{}: {}", filename, r.error().message));
        return 1;
    }
    return 0;
}

int cmd_create(int argc, char** argv)
{
    std::string format = "raw", backing, backing_fmt;
    OptionList opts;
    bool quiet = false, unsafe = false;
    static const option long_opts[] = {{"help", no_argument, nullptr, 'h'}, {"object", required_argument, nullptr, 'j'},
                                       {nullptr, 0, nullptr, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":F:b:f:ho:qu", long_opts, nullptr)) != -1) {
        switch (c) {
        case 'f': format = optarg; break;
        case 'b': backing = optarg; break;
        case 'F': backing_fmt = optarg; break;
        case 'q': quiet = true; break;
        case 'u': unsafe = true; break;
        case 'o': {
            std::string err;
            if (!parse_option_list(optarg, opts, err)) {
                error(err);
                return 1;
            }
            break;
        }
        case 'h':
            std::printf("usage: emu-img create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] "
                        "filename [size]\n");
            return 0;
        case 'j': error("--object is not supported yet"); return 1;
        case ':': error(fmt::format("option '{}' requires an argument", argv[optind - 1])); return 1;
        default: error(fmt::format("unrecognized option '{}'", argv[optind - 1])); return 1;
        }
    }
    if (optind >= argc) {
        error("Expecting image file name");
        return 1;
    }
    std::string filename = argv[optind++];
    std::optional<uint64_t> size;
    if (optind < argc) {
        std::string text = argv[optind++];
        size = parse_size(text);
        if (!size) {
            error("Invalid image size specified. You may use k, M, G, T, P or E suffixes for\nemu-img: kilobytes, "
                  "megabytes, gigabytes, terabytes, petabytes and exabytes.");
            return 1;
        }
    }
    if (optind < argc) {
        error(fmt::format("Unexpected argument: {}", argv[optind]));
        return 1;
    }
    if (opts.help) {
        std::fputs(format == "qcow2" ? k_qcow2_help : k_raw_help, stdout);
        return 0;
    }
    if (!backing.empty())
        opts.items.emplace_back("backing_file", backing);
    if (!backing_fmt.empty())
        opts.items.emplace_back("backing_fmt", backing_fmt);
    if (!backing.empty() && format == "raw") {
        error(fmt::format("{}: Backing file not supported for file format 'raw'", filename));
        return 1;
    }
    return create_image(format, filename, opts, size, quiet, !unsafe, nullptr);
}

} // namespace emu::img

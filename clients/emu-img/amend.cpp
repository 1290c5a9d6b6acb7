// emu-img amend — change image options in place: compat (0.10 <-> 1.1),
// lazy_refcounts, size, backing_file/backing_fmt. Creation-only options and
// the ones not supported yet are refused by name.
#include "clients/emu-img/common.h"

#include "storage/qcow2/qcow2.h"

#include <fmt/format.h>
#include <getopt.h>

namespace emu::img {

namespace {

const char* k_amend_help = R"(Amend options for 'qcow2':
  backing_file=<str>     - File name of a base image
  backing_fmt=<str>      - Image format of the base image
  compat=<str>           - Compatibility level (v2 [0.10] or v3 [1.1])
  lazy_refcounts=<bool (on/off)> - Postpone refcount updates
  size=<size>            - Virtual disk size
)";

} // namespace

int cmd_amend(int argc, char** argv)
{
    OpenFlags flags;
    flags.read_only = false;
    OptionList opts;
    bool have_opts = false, quiet = false;
    Progress progress;
    enum { OptObject = 256, OptImageOpts, OptForce };
    static const option long_opts[] = {{"help", no_argument, nullptr, 'h'},
                                       {"object", required_argument, nullptr, OptObject},
                                       {"image-opts", no_argument, nullptr, OptImageOpts},
                                       {"force", no_argument, nullptr, OptForce},
                                       {nullptr, 0, nullptr, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":ho:f:t:pq", long_opts, nullptr)) != -1) {
        switch (c) {
        case 'o': {
            std::string err;
            if (!parse_option_list(optarg, opts, err)) {
                error(err);
                return 1;
            }
            have_opts = true;
            break;
        }
        case 'f': flags.format = optarg; break;
        case 'p': progress.on = true; break;
        case 'q': quiet = true; break;
        case OptForce: break; // only matters for encryption changes, which are refused anyway
        case 't': {
            auto m = storage::parse_cache_mode(optarg);
            if (!m) {
                error(m.error().message);
                return 1;
            }
            flags.cache = *m;
            break;
        }
        case 'h':
            std::printf("usage: emu-img amend [-p] [-q] [-f fmt] [-t cache] [--force] -o options filename\n");
            return 0;
        case OptObject: case OptImageOpts: error(fmt::format("{}: not supported yet", argv[optind - 1])); return 1;
        case ':': error(fmt::format("option '{}' requires an argument", argv[optind - 1])); return 1;
        default: error(fmt::format("unrecognized option '{}'", argv[optind - 1])); return 1;
        }
    }
    if (quiet)
        progress.on = false;
    if (!have_opts) {
        error("Must specify options (-o)\nTry 'emu-img --help' for more information");
        return 1;
    }
    if (opts.help) {
        std::fputs(k_amend_help, stdout);
        return 0;
    }
    if (optind != argc - 1) {
        error("Expecting one image file name\nTry 'emu-img --help' for more information");
        return 1;
    }
    const std::string filename = argv[optind];
    auto be = open_backend(filename, flags);
    if (!be) {
        error(be.error().message);
        return 1;
    }
    auto* q = dynamic_cast<storage::qcow2::Driver*>(&(*be)->driver());
    if (!q) {
        error(fmt::format("Format driver '{}' does not support option amendment", (*be)->driver().format_name()));
        return 1;
    }
    storage::qcow2::AmendOptions a;
    const auto& h = q->header();
    std::optional<std::string> backing_file, backing_fmt;
    for (const auto& [key, value] : opts.items) {
        if (key == "compat") {
            if (value == "0.10" || value == "v2")
                a.version = 2;
            else if (value == "1.1" || value == "v3")
                a.version = 3;
            else {
                error(fmt::format("Unknown compatibility level {}", value));
                return 1;
            }
        } else if (key == "lazy_refcounts") {
            auto b = parse_bool(value);
            if (!b) {
                error("Parameter 'lazy_refcounts' expects 'on' or 'off'");
                return 1;
            }
            a.lazy_refcounts = *b;
        } else if (key == "size") {
            auto s = parse_size(value);
            if (!s) {
                error("Parameter 'size' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E "
                      "means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.");
                return 1;
            }
            a.size = (*s + 511) & ~uint64_t(511);
        } else if (key == "backing_file") {
            backing_file = value;
        } else if (key == "backing_fmt") {
            backing_fmt = value;
        } else if (key == "cluster_size" || key == "compression_type" || key == "preallocation" ||
                   key == "extended_l2" || key == "encryption") {
            error(fmt::format("Invalid parameter '{}'\nThis option is only supported for image creation", key));
            return 1;
        } else if (key == "refcount_bits") {
            error("amend: changing refcount_bits is not supported yet");
            return 1;
        } else if (key == "data_file" || key == "data_file_raw") {
            error("data-file can only be set for images that use an external data file");
            return 1;
        } else if (key.starts_with("encrypt.")) {
            error("Can't amend encryption options - encryption not present");
            return 1;
        } else {
            error(fmt::format("Invalid parameter '{}'", key));
            return 1;
        }
    }
    progress.show(0, 100);
    if (auto r = q->amend(a); !r) {
        error(r.error().message);
        return 1;
    }
    // The backing file: unchanged names are accepted; a change is made as `rebase -u` would.
    if ((backing_file && *backing_file != h.backing_file) || (backing_fmt && *backing_fmt != h.backing_format)) {
        std::string name = backing_file.value_or(h.backing_file);
        std::string format = backing_fmt.value_or(h.backing_format);
        if (name.empty() && !format.empty()) {
            error("Backing format cannot be used without backing file");
            return 1;
        }
        error("warning: the backing file is changed as 'rebase -u' would: no data is copied");
        if (auto r = q->set_backing_file(name, format); !r) {
            error(r.error().message);
            return 1;
        }
    }
    if (auto r = (*be)->close(); !r) {
        error(r.error().message);
        return 1;
    }
    progress.finish();
    return 0;
}

} // namespace emu::img

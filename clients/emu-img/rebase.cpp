// emu-img rebase — give an image another backing file. Safe mode (default)
// first copies into the image every cluster whose contents would change
// (where the old and the new backing chain differ and the image has no data
// of its own); -u only rewrites the name. -b "" removes the backing file.
#include "clients/emu-img/common.h"

#include <cstring>
#include <fmt/format.h>
#include <getopt.h>

namespace emu::img {

int cmd_rebase(int argc, char** argv)
{
    OpenFlags flags;
    flags.read_only = false;
    flags.cache = storage::CacheMode::Unsafe;
    storage::CacheMode src_cache = storage::CacheMode::Writeback;
    std::optional<std::string> backing;
    std::string backing_fmt;
    bool quiet = false, unsafe = false;
    Progress progress;
    enum { OptObject = 256, OptImageOpts };
    static const option long_opts[] = {{"help", no_argument, nullptr, 'h'},
                                       {"object", required_argument, nullptr, OptObject},
                                       {"image-opts", no_argument, nullptr, OptImageOpts},
                                       {"force-share", no_argument, nullptr, 'U'},
                                       {nullptr, 0, nullptr, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":hf:F:b:upt:T:qU", long_opts, nullptr)) != -1) {
        switch (c) {
        case 'f': flags.format = optarg; break;
        case 'F': backing_fmt = optarg; break;
        case 'b': backing = optarg; break;
        case 'u': unsafe = true; break;
        case 'p': progress.on = true; break;
        case 'q': quiet = true; break;
        case 'U': flags.force_share = true; break;
        case 't': case 'T': {
            auto m = storage::parse_cache_mode(optarg);
            if (!m) {
                error(m.error().message);
                return 1;
            }
            (c == 't' ? flags.cache : src_cache) = *m;
            break;
        }
        case 'h':
            std::printf("usage: emu-img rebase [-U] [-q] [-f fmt] [-t cache] [-T src_cache] [-p] [-u] -b backing_file "
                        "[-F backing_fmt] filename\n");
            return 0;
        case OptObject: case OptImageOpts: error(fmt::format("{}: not supported yet", argv[optind - 1])); return 1;
        case ':': error(fmt::format("option '{}' requires an argument", argv[optind - 1])); return 1;
        default: error(fmt::format("unrecognized option '{}'", argv[optind - 1])); return 1;
        }
    }
    if (quiet)
        progress.on = false;
    if (optind != argc - 1) {
        error("Expecting one image file name\nTry 'emu-img --help' for more information");
        return 1;
    }
    if (!unsafe && !backing) {
        error("Must specify backing file (-b) or use unsafe mode (-u)\nTry 'emu-img --help' for more information");
        return 1;
    }
    const std::string filename = argv[optind];
    const std::string name = backing.value_or("");
    if (!name.empty() && backing_fmt.empty()) {
        error(fmt::format("Could not change the backing file to '{}': backing format must be specified", name));
        return 1;
    }
    if (flags.force_share) {
        error(fmt::format("Could not open '{}': force-share=on can only be used with read-only images", filename));
        return 1;
    }
    flags.open_backing = !unsafe;
    auto be = open_backend(filename, flags);
    if (!be) {
        error(be.error().message);
        return 1;
    }
    storage::BlockDriver& top = (*be)->driver();

    if (!unsafe) {
        std::unique_ptr<storage::BlockBackend> next;
        if (!name.empty()) {
            OpenFlags nf;
            nf.format = backing_fmt;
            nf.cache = src_cache;
            const std::string path = storage::resolve_backing_path(filename, name);
            auto nb = open_backend(path, nf);
            if (!nb) {
                // "Could not open 'x': " once, as qemu-img words it here.
                std::string why = nb.error().message;
                const std::string prefix = fmt::format("Could not open '{}': ", path);
                if (why.starts_with(prefix + prefix))
                    why.erase(0, prefix.size());
                error(fmt::format("Could not open new backing file '{}': {}", name, why));
                return 1;
            }
            next = std::move(*nb);
        }
        // Granules of the image's cluster size (or 64 KiB): what differs is copied whole.
        auto info = top.info();
        const uint64_t granule = info.cluster_size.value_or(65536);
        const uint64_t size = top.size();
        std::vector<uint8_t> old_data(granule), new_data(granule);
        progress.show(0, size);
        for (uint64_t off = 0; off < size;) {
            uint64_t n = std::min(granule - off % granule, size - off);
            auto st = top.block_status(off, n);
            if (!st) {
                error(fmt::format("error while reading block status at offset {}: {}", off, st.error().message));
                return 1;
            }
            if (st->length && st->length < n)
                n = st->length;
            if (!st->allocated) {
                std::span<uint8_t> o(old_data.data(), n), w(new_data.data(), n);
                if (auto r = top.read(off, o); !r) {
                    error(fmt::format("error while reading image at offset {}: {}", off, r.error().message));
                    return 1;
                }
                if (next) {
                    if (auto r = storage::read_clamped(next->driver(), off, w); !r) {
                        error(fmt::format("error while reading the new backing file at offset {}: {}", off,
                                          r.error().message));
                        return 1;
                    }
                } else {
                    std::memset(w.data(), 0, n);
                }
                if (std::memcmp(o.data(), w.data(), n) != 0) {
                    if (auto r = top.write(off, std::span<const uint8_t>(o.data(), n)); !r) {
                        error(fmt::format("error while writing image at offset {}: {}", off, r.error().message));
                        return 1;
                    }
                }
            }
            off += n;
            progress.show(off, size);
        }
    }
    if (auto r = top.set_backing_file(name, backing_fmt); !r) {
        if (r.error().err == ENOTSUP)
            error(fmt::format("Could not change the backing file to '{}': Operation not supported", name));
        else
            error(fmt::format("Could not change the backing file to '{}': {}", name, r.error().message));
        return 1;
    }
    if (auto r = (*be)->close(); !r) {
        error(r.error().message);
        return 1;
    }
    progress.finish();
    return 0;
}

} // namespace emu::img

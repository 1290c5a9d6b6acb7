// emu-img commit — write what an image holds over its backing chain into a
// backing image (the direct one, or -b base further down), then empty the
// image (unless -d; -b implies -d, as qemu-img).
#include "clients/emu-img/common.h"
#include "storage/commit.h"

#include <chrono>
#include <fmt/format.h>
#include <getopt.h>
#include <thread>

namespace emu::img {

namespace {

constexpr uint64_t k_chunk = 1u << 20;

// Layers from the top down: their file names as opened and as their overlay names them.
struct Layer {
    std::string path;
    std::string named; // as written in the overlay's header ("" for the top)
};

storage::Result<std::vector<Layer>> chain_layers(const std::string& top, const OpenFlags& flags)
{
    OpenFlags f = flags;
    f.read_only = true;
    f.force_share = true;
    auto be = open_backend(top, f);
    if (!be)
        return std::unexpected(be.error());
    std::vector<Layer> layers;
    std::string path = top, named;
    for (storage::BlockDriver* d = &(*be)->driver(); d; d = d->backing()) {
        layers.push_back({path, named});
        named = d->info().backing_filename;
        path = storage::resolve_backing_path(path, named);
    }
    return layers;
}

} // namespace

int cmd_commit(int argc, char** argv)
{
    OpenFlags flags;
    flags.cache = storage::CacheMode::Unsafe;
    std::string base_name;
    bool quiet = false, drop = false;
    uint64_t rate = 0;
    Progress progress;
    enum { OptObject = 256, OptImageOpts };
    static const option long_opts[] = {{"help", no_argument, nullptr, 'h'},
                                       {"object", required_argument, nullptr, OptObject},
                                       {"image-opts", no_argument, nullptr, OptImageOpts},
                                       {nullptr, 0, nullptr, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":f:ht:b:dpqr:", long_opts, nullptr)) != -1) {
        switch (c) {
        case 'f': flags.format = optarg; break;
        case 'b': base_name = optarg; drop = true; break; // -b implies -d
        case 'd': drop = true; break;
        case 'p': progress.on = true; break;
        case 'q': quiet = true; break;
        case 't': {
            auto m = storage::parse_cache_mode(optarg);
            if (!m) {
                error(m.error().message);
                return 1;
            }
            flags.cache = *m;
            break;
        }
        case 'r': {
            auto r = parse_size(optarg);
            if (!r) {
                error("Invalid rate limit specified. You may use k, M, G, T, P or E suffixes for\nemu-img: kilobytes, "
                      "megabytes, gigabytes, terabytes, petabytes and exabytes.");
                return 1;
            }
            rate = *r;
            break;
        }
        case 'h':
            std::printf("usage: emu-img commit [-q] [-f fmt] [-t cache] [-b base] [-r rate_limit] [-d] [-p] "
                        "filename\n");
            return 0;
        case OptObject: case OptImageOpts: error(fmt::format("{}: not supported yet", argv[optind - 1])); return 1;
        case ':': error(fmt::format("option '{}' requires an argument", argv[optind - 1])); return 1;
        default: error(fmt::format("unrecognized option '{}'", argv[optind - 1])); return 1;
        }
    }
    if (optind != argc - 1) {
        error("Expecting one image file name\nTry 'emu-img --help' for more information");
        return 1;
    }
    const std::string filename = argv[optind];
    if (quiet)
        progress.on = false;

    // Find the base among the backing images.
    auto layers = chain_layers(filename, flags);
    if (!layers) {
        error(layers.error().message);
        return 1;
    }
    if (layers->size() < 2) {
        error("Image does not have a backing file");
        return 1;
    }
    size_t depth = 1;
    if (!base_name.empty()) {
        depth = 0;
        const std::string dir_relative = storage::resolve_backing_path(filename, base_name);
        for (size_t i = 1; i < layers->size() && !depth; i++) {
            const Layer& l = (*layers)[i];
            if (l.named == base_name || storage::same_file(base_name, l.path) ||
                storage::same_file(dir_relative, l.path))
                depth = i;
        }
        if (!depth) {
            error(fmt::format("Did not find '{}' in the backing chain of '{}'", base_name, filename));
            return 1;
        }
    }
    const std::string base_path = (*layers)[depth].path;

    // Reopen: the base writable, the top writable only if it is emptied afterwards.
    storage::BackendOptions o;
    o.image.filename = filename;
    o.image.format = flags.format;
    o.image.read_only = drop;
    o.image.cache = flags.cache;
    o.image.writable_backing = [&](const std::string& path) { return storage::same_file(path, base_path); };
    auto be = storage::BlockBackend::open(o);
    if (!be) {
        error(be.error().message);
        return 1;
    }
    storage::BlockDriver& top = (*be)->driver();
    storage::BlockDriver* base = &top;
    for (size_t i = 0; i < depth; i++)
        base = base->backing();
    storage::CommitCopier copier(top, *base, k_chunk);
    if (auto r = copier.prepare(); !r) {
        error(r.error().message);
        return 1;
    }
    const uint64_t size = copier.size();
    const auto start = std::chrono::steady_clock::now();
    uint64_t copied = 0;
    progress.show(0, size);
    for (uint64_t off = 0; off < size;) {
        auto run = copier.step(off);
        if (!run) {
            error(run.error().message);
            return 1;
        }
        if (run->copied) {
            copied += run->length;
            if (rate) {
                // Keep the average at or below the rate limit.
                auto due = start + std::chrono::duration<double>(double(copied) / double(rate));
                std::this_thread::sleep_until(due);
            }
        }
        off += run->length;
        progress.show(off, size);
    }
    if (auto r = base->flush(); !r) {
        error(fmt::format("error while flushing '{}': {}", base_path, r.error().message));
        return 1;
    }
    if (!drop) {
        if (auto r = top.make_empty(); !r) {
            error(fmt::format("Could not empty {}: {}", filename, r.error().message));
            return 1;
        }
    }
    if (auto r = base->close(); !r) {
        error(r.error().message);
        return 1;
    }
    if (auto r = (*be)->close(); !r) {
        error(r.error().message);
        return 1;
    }
    progress.finish();
    if (!quiet)
        std::printf("Image committed.\n");
    return 0;
}

} // namespace emu::img

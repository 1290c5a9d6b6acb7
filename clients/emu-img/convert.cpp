// emu-img convert — copy one or more images (concatenated) into a new or
// existing image: format conversion, compression (-c), sparse detection
// (-S), a backing file for the target (-B), progress (-p).
#include "clients/emu-img/common.h"

#include "storage/qcow2/qcow2.h"

#include <algorithm>
#include <cstring>
#include <fmt/format.h>
#include <getopt.h>

namespace emu::img {

int create_image(const std::string& format, const std::string& filename, const OptionList& opts,
                 std::optional<uint64_t> size, bool quiet, bool check_backing, uint64_t* size_out);

namespace {

bool all_zero(const uint8_t* p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

struct Progress {
    bool on = false;
    double last = -1;
    void show(uint64_t done, uint64_t total)
    {
        if (!on)
            return;
        double pct = total ? double(done) * 100.0 / double(total) : 100.0;
        if (pct - last < 1.0 && pct < 100.0)
            return;
        last = pct;
        std::printf("    (%.2f/100%%)\r", pct);
        std::fflush(stdout);
    }
    void finish()
    {
        if (on)
            std::printf("    (100.00/100%%)\n");
    }
};

} // namespace

int cmd_convert(int argc, char** argv)
{
    namespace st = storage;
    OpenFlags src_flags;
    std::string out_fmt = "raw", backing, backing_fmt;
    OptionList opts;
    bool compress = false, skip_create = false, quiet = false, target_is_zero = false;
    uint64_t sparse = 4096;
    st::CacheMode target_cache = st::CacheMode::Unsafe;
    Progress progress;
    enum { OptObject = 256, OptImageOpts, OptTargetImageOpts, OptTargetIsZero, OptSalvage, OptBitmaps, OptSkipBroken };
    static const option long_opts[] = {{"help", no_argument, nullptr, 'h'},
                                       {"object", required_argument, nullptr, OptObject},
                                       {"image-opts", no_argument, nullptr, OptImageOpts},
                                       {"target-image-opts", no_argument, nullptr, OptTargetImageOpts},
                                       {"target-is-zero", no_argument, nullptr, OptTargetIsZero},
                                       {"salvage", no_argument, nullptr, OptSalvage},
                                       {"bitmaps", no_argument, nullptr, OptBitmaps},
                                       {"skip-broken-bitmaps", no_argument, nullptr, OptSkipBroken},
                                       {"force-share", no_argument, nullptr, 'U'},
                                       {nullptr, 0, nullptr, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":hf:O:B:CcF:o:l:S:pt:T:qnm:Wr:U", long_opts, nullptr)) != -1) {
        switch (c) {
        case 'f': src_flags.format = optarg; break;
        case 'O': out_fmt = optarg; break;
        case 'B': backing = optarg; break;
        case 'F': backing_fmt = optarg; break;
        case 'c': compress = true; break;
        case 'n': skip_create = true; break;
        case 'q': quiet = true; break;
        case 'p': progress.on = true; break;
        case 'U': src_flags.force_share = true; break;
        case 'W': case 'm': case 'r': break; // out-of-order writes, coroutines, rate limit: accepted, no effect
        case 'o': {
            std::string err;
            if (!parse_option_list(optarg, opts, err)) {
                error(err);
                return 1;
            }
            break;
        }
        case 'S': {
            auto s = parse_size(optarg);
            if (!s || (*s && *s % 512) || *s > (16u << 20)) {
                error("Invalid buffer size for sparse output specified. Valid sizes are multiples of 512 up to 16MB.");
                return 1;
            }
            sparse = *s;
            break;
        }
        case 't': case 'T': {
            auto m = st::parse_cache_mode(optarg);
            if (!m) {
                error(m.error().message);
                return 1;
            }
            (c == 't' ? target_cache : src_flags.cache) = *m;
            break;
        }
        case OptTargetIsZero: target_is_zero = true; break;
        case 'l': error("convert: -l (snapshots) is not supported yet"); return 1;
        case 'C': error("convert: -C (copy offloading) is not supported yet"); return 1;
        case 'h':
            std::printf("usage: emu-img convert [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] "
                        "[-B backing_file [-F backing_fmt]] [-o options] [-S sparse_size] [-U] filename [filename2 "
                        "[...]] output_filename\n");
            return 0;
        case ':': error(fmt::format("option '{}' requires an argument", argv[optind - 1])); return 1;
        case '?': error(fmt::format("unrecognized option '{}'", argv[optind - 1])); return 1;
        default: error(fmt::format("convert: option '{}' is not supported yet", argv[optind - 1])); return 1;
        }
    }
    if (argc - optind < 2) {
        error("Must specify image file name");
        return 1;
    }
    if (opts.help) {
        char* help_argv[] = {argv[0], const_cast<char*>("-f"), out_fmt.data(), const_cast<char*>("-o"),
                             const_cast<char*>("help"), const_cast<char*>("x"), nullptr};
        return cmd_create(6, help_argv);
    }
    if (target_is_zero && !skip_create) {
        error("--target-is-zero requires use of -n flag");
        return 1;
    }
    if (compress && out_fmt != "qcow2") {
        error("Compression not supported for this file format");
        return 1;
    }
    if (!backing.empty() && skip_create) {
        error("Specifying backing image makes no sense when not creating the output image");
        return 1;
    }
    const std::string target = argv[argc - 1];
    std::vector<std::unique_ptr<st::BlockBackend>> sources;
    uint64_t total = 0;
    for (int i = optind; i < argc - 1; i++) {
        auto be = open_backend(argv[i], src_flags);
        if (!be) {
            error(be.error().message);
            return 1;
        }
        total += (*be)->size();
        sources.push_back(std::move(*be));
    }

    if (!skip_create) {
        if (!backing.empty()) {
            if (out_fmt == "raw") {
                error(fmt::format("{}: Backing file not supported for file format 'raw'", target));
                return 1;
            }
            opts.items.emplace_back("backing_file", backing);
            if (!backing_fmt.empty())
                opts.items.emplace_back("backing_fmt", backing_fmt);
        }
        if (int rc = create_image(out_fmt, target, opts, total, true, true, nullptr); rc != 0)
            return rc;
    } else if (!opts.items.empty()) {
        error("-o has no effect when skipping image creation");
        return 1;
    }
    OpenFlags tflags;
    tflags.format = out_fmt;
    tflags.read_only = false;
    tflags.cache = target_cache;
    auto out = open_backend(target, tflags);
    if (!out) {
        error(out.error().message);
        return 1;
    }
    st::BlockBackend& dst = **out;
    if (dst.size() < total) {
        error(fmt::format("Target image is too small ({} bytes); the sources need {} bytes", dst.size(), total));
        return 1;
    }
    st::BlockDriver* dst_backing = dst.driver().backing();
    const bool zero_init = (!skip_create && !dst_backing) || target_is_zero;
    auto* qdst = dynamic_cast<st::qcow2::Driver*>(&dst.driver());
    const uint64_t chunk = compress ? qdst->cluster_size() : std::max<uint64_t>(1u << 20, qdst ? qdst->cluster_size() : 0);
    const uint64_t granule = compress ? chunk : (sparse ? sparse : chunk);
    std::vector<uint8_t> buf(chunk), cmp(chunk);

    uint64_t base = 0;
    progress.show(0, total);
    for (auto& src : sources) {
        const uint64_t size = src->size();
        for (uint64_t off = 0; off < size;) {
            uint64_t n = std::min(chunk - (base + off) % chunk, size - off);
            // Skip what reads as zeroes without reading it, when the target reads as zeroes too.
            auto status = chain_status(src->driver(), off, n);
            if (!status) {
                error(fmt::format("error while reading block status at offset {}: {}", off, status.error().message));
                return 1;
            }
            if (status->status.zero && !status->status.data && zero_init && sparse) {
                off += status->status.length;
                progress.show(base + off, total);
                continue;
            }
            if (auto r = src->read(off, std::span<uint8_t>(buf.data(), n)); !r) {
                error(fmt::format("error while reading at byte {}: {}", off, r.error().message));
                return 1;
            }
            const uint64_t dst_off = base + off;
            auto fail_write = [&](const st::Error& e) {
                error(fmt::format("error while writing at byte {}: {}", dst_off, e.message));
                return 1;
            };
            if (compress) {
                if (all_zero(buf.data(), n)) {
                    if (!zero_init)
                        if (auto r = dst.write_zeroes(dst_off, n, true); !r)
                            return fail_write(r.error());
                } else if (auto r = qdst->write_compressed(dst_off, std::span<const uint8_t>(buf.data(), n)); !r) {
                    return fail_write(r.error());
                }
            } else {
                if (dst_backing) {
                    if (auto r = st::read_clamped(*dst_backing, dst_off, std::span<uint8_t>(cmp.data(), n)); !r) {
                        error(fmt::format("error while reading the backing file at byte {}: {}", dst_off, r.error().message));
                        return 1;
                    }
                }
                // Walk granules; write runs of granules that need writing.
                uint64_t run_start = 0, pos = 0;
                auto flush_run = [&](uint64_t end) -> st::Result<void> {
                    if (end > run_start)
                        return dst.write(dst_off + run_start, std::span<const uint8_t>(buf.data() + run_start, end - run_start));
                    return {};
                };
                while (pos < n) {
                    uint64_t g = std::min(granule - (dst_off + pos) % granule, n - pos);
                    bool skip;
                    bool zero_write = false;
                    if (dst_backing)
                        skip = std::memcmp(buf.data() + pos, cmp.data() + pos, g) == 0;
                    else if (!sparse)
                        skip = false;
                    else if (all_zero(buf.data() + pos, g)) {
                        skip = true;
                        zero_write = !zero_init;
                    } else
                        skip = false;
                    if (skip) {
                        if (auto r = flush_run(pos); !r)
                            return fail_write(r.error());
                        if (zero_write)
                            if (auto r = dst.write_zeroes(dst_off + pos, g, true); !r)
                                return fail_write(r.error());
                        run_start = pos + g;
                    }
                    pos += g;
                }
                if (auto r = flush_run(n); !r)
                    return fail_write(r.error());
            }
            off += n;
            progress.show(base + off, total);
        }
        base += size;
    }
    if (auto r = dst.close(); !r) {
        error(fmt::format("error while closing '{}': {}", target, r.error().message));
        return 1;
    }
    progress.finish();
    (void)quiet;
    return 0;
}

} // namespace emu::img

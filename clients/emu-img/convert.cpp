// emu-img convert — copy one or more images (concatenated) into a new or
// existing image: format conversion, compression (-c), sparse detection
// (-S), a backing file for the target (-B), progress (-p).
#include "clients/emu-img/common.h"

#include "storage/qcow2/qcow2.h"

#include <algorithm>
#include <cstring>
#include <fmt/format.h>
#include <condition_variable>
#include <deque>
#include <getopt.h>
#include <mutex>
#include <thread>

namespace emu::img {

namespace {

bool all_zero(const uint8_t* p, size_t n)
{
    return storage::buffer_is_zero(std::span<const uint8_t>(p, n));
}

// One piece of the sources on its way to the target.
struct Chunk {
    uint64_t dst_off = 0;
    uint64_t n = 0;
    bool skip = false; // reads as zeroes: nothing to write
    std::vector<uint8_t> data;
    std::string error; // the reader failed: the conversion stops
};

// A bounded queue between the reader thread and the writer, with a pool of
// chunk buffers so that none is allocated per chunk.
class ChunkQueue {
public:
    ChunkQueue(size_t depth, uint64_t chunk_bytes) : m_depth(depth), m_chunk_bytes(chunk_bytes) {}

    void push(Chunk c)
    {
        std::unique_lock lock(m_mutex);
        m_cv.wait(lock, [&] { return m_queue.size() < m_depth || m_stopped; });
        if (m_stopped)
            return;
        m_queue.push_back(std::move(c));
        m_cv.notify_all();
    }
    std::optional<Chunk> pop()
    {
        std::unique_lock lock(m_mutex);
        m_cv.wait(lock, [&] { return !m_queue.empty() || m_closed; });
        if (m_queue.empty())
            return std::nullopt;
        Chunk c = std::move(m_queue.front());
        m_queue.pop_front();
        m_cv.notify_all();
        return c;
    }
    std::vector<uint8_t> buffer()
    {
        std::lock_guard lock(m_mutex);
        if (m_free.empty())
            return std::vector<uint8_t>(m_chunk_bytes);
        auto b = std::move(m_free.back());
        m_free.pop_back();
        return b;
    }
    void recycle(std::vector<uint8_t> b)
    {
        if (b.size() != m_chunk_bytes)
            return;
        std::lock_guard lock(m_mutex);
        m_free.push_back(std::move(b));
    }
    void close()
    {
        std::lock_guard lock(m_mutex);
        m_closed = true;
        m_cv.notify_all();
    }
    // The writer gives up: the reader's next push returns at once.
    void stop()
    {
        std::lock_guard lock(m_mutex);
        m_stopped = m_closed = true;
        m_cv.notify_all();
    }
    bool stopped()
    {
        std::lock_guard lock(m_mutex);
        return m_stopped;
    }

private:
    std::mutex m_mutex;
    std::condition_variable m_cv;
    std::deque<Chunk> m_queue;
    std::vector<std::vector<uint8_t>> m_free;
    size_t m_depth;
    uint64_t m_chunk_bytes;
    bool m_closed = false;
    bool m_stopped = false;
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
    const uint64_t cluster = qdst ? qdst->cluster_size() : 0;
    const uint64_t chunk = std::max<uint64_t>(2u << 20, cluster);
    const uint64_t granule = compress ? cluster : (sparse ? sparse : chunk);
    std::vector<uint8_t> cmp(chunk);

    // A reader thread reads the sources while this thread writes the target:
    // each side only touches its own driver stacks.
    ChunkQueue queue(4, chunk);
    std::thread reader([&] {
        uint64_t base = 0;
        for (size_t i = 0; i < sources.size() && !queue.stopped(); i++) {
            st::BlockBackend& src = *sources[i];
            const uint64_t size = src.size();
            for (uint64_t off = 0; off < size && !queue.stopped();) {
                Chunk c;
                c.dst_off = base + off;
                c.n = std::min(chunk - (base + off) % chunk, size - off);
                // Skip what reads as zeroes without reading it, when the target reads as zeroes too.
                auto status = chain_status(src.driver(), off, c.n);
                if (!status) {
                    c.error = fmt::format("error while reading block status at offset {}: {}", off,
                                          status.error().message);
                    queue.push(std::move(c));
                    return;
                }
                if (status->status.zero && !status->status.data && zero_init && sparse) {
                    c.n = status->status.length;
                    c.skip = true;
                } else {
                    c.data = queue.buffer();
                    if (auto r = src.read(off, std::span<uint8_t>(c.data.data(), c.n)); !r) {
                        c.error = fmt::format("error while reading at byte {}: {}", off, r.error().message);
                        queue.push(std::move(c));
                        return;
                    }
                }
                off += c.n;
                queue.push(std::move(c));
            }
            base += size;
        }
        queue.close();
    });
    auto stop_reader = [&] {
        queue.stop();
        reader.join();
    };

    progress.show(0, total);
    while (auto next = queue.pop()) {
        Chunk& c = *next;
        if (!c.error.empty()) {
            error(c.error);
            stop_reader();
            return 1;
        }
        const uint64_t dst_off = c.dst_off, n = c.n;
        auto fail_write = [&](const st::Error& e) {
            error(fmt::format("error while writing at byte {}: {}", dst_off, e.message));
            stop_reader();
            return 1;
        };
        if (c.skip) {
            progress.show(dst_off + n, total);
            continue;
        }
        const uint8_t* buf = c.data.data();
        if (compress) {
            for (uint64_t pos = 0; pos < n;) {
                const uint64_t g = std::min(cluster - (dst_off + pos) % cluster, n - pos);
                if (all_zero(buf + pos, g)) {
                    if (!zero_init)
                        if (auto r = dst.write_zeroes(dst_off + pos, g, true); !r)
                            return fail_write(r.error());
                } else if (auto r = qdst->write_compressed(dst_off + pos, std::span<const uint8_t>(buf + pos, g)); !r) {
                    return fail_write(r.error());
                }
                pos += g;
            }
        } else {
            if (dst_backing) {
                if (auto r = st::read_clamped(*dst_backing, dst_off, std::span<uint8_t>(cmp.data(), n)); !r) {
                    error(fmt::format("error while reading the backing file at byte {}: {}", dst_off,
                                      r.error().message));
                    stop_reader();
                    return 1;
                }
            }
            // Walk granules; write runs of granules that need writing.
            uint64_t run_start = 0, pos = 0;
            auto flush_run = [&](uint64_t end) -> st::Result<void> {
                if (end > run_start)
                    return dst.write(dst_off + run_start, std::span<const uint8_t>(buf + run_start, end - run_start));
                return {};
            };
            while (pos < n) {
                uint64_t g = std::min(granule - (dst_off + pos) % granule, n - pos);
                bool skip;
                bool zero_write = false;
                if (dst_backing)
                    skip = std::memcmp(buf + pos, cmp.data() + pos, g) == 0;
                else if (!sparse)
                    skip = false;
                else if (all_zero(buf + pos, g)) {
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
        queue.recycle(std::move(c.data));
        progress.show(dst_off + n, total);
    }
    reader.join();
    if (auto r = dst.close(); !r) {
        error(fmt::format("error while closing '{}': {}", target, r.error().message));
        return 1;
    }
    progress.finish();
    (void)quiet;
    return 0;
}

} // namespace emu::img

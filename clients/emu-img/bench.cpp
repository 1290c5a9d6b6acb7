// emu-img bench — a simple I/O benchmark with qemu-img's options and output:
// `count` requests of `size` bytes, `depth` in flight, starting at `offset`
// and advancing by `step` (wrapping at the end of the image), reads or writes
// (-w, with --pattern), optionally flushing every --flush-interval requests.
#include "clients/emu-img/common.h"

#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <fmt/format.h>
#include <getopt.h>
#include <mutex>

namespace emu::img {

namespace {

// Parses an unsigned decimal number no larger than `max`.
std::optional<uint64_t> parse_count(const char* text, uint64_t max)
{
    if (!text || !*text || *text == '-')
        return std::nullopt;
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(text, &end, 0);
    if (errno || *end || v > max)
        return std::nullopt;
    return v;
}

struct Inflight {
    std::mutex mutex;
    std::condition_variable cv;
    uint64_t in_flight = 0;
    std::optional<storage::Error> failure;
};

} // namespace

int cmd_bench(int argc, char** argv)
{
    OpenFlags flags;
    uint64_t count = 75000, depth = 64, offset = 0, size = 4096, step = 0, flush_interval = 0;
    bool write = false, drain_on_flush = true;
    int pattern = 0;
    enum { OptObject = 256, OptImageOpts, OptPattern, OptFlushInterval, OptNoDrain };
    static const option long_opts[] = {{"help", no_argument, nullptr, 'h'},
                                       {"flush-interval", required_argument, nullptr, OptFlushInterval},
                                       {"image-opts", no_argument, nullptr, OptImageOpts},
                                       {"pattern", required_argument, nullptr, OptPattern},
                                       {"no-drain", no_argument, nullptr, OptNoDrain},
                                       {"force-share", no_argument, nullptr, 'U'},
                                       {nullptr, 0, nullptr, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":hc:d:f:ni:o:qs:S:t:wU", long_opts, nullptr)) != -1) {
        switch (c) {
        case 'c': {
            auto v = parse_count(optarg, INT_MAX);
            if (!v) {
                error("Invalid request count specified");
                return 1;
            }
            count = *v;
            break;
        }
        case 'd': {
            auto v = parse_count(optarg, INT_MAX);
            if (!v || *v == 0) {
                error("Invalid queue depth specified");
                return 1;
            }
            depth = *v;
            break;
        }
        case 'f': flags.format = optarg; break;
        case 'n': error("aio=native is not supported (only aio=threads)"); return 1;
        case 'i':
            if (std::strcmp(optarg, "threads") != 0) {
                if (auto r = storage::parse_aio(optarg); !r) {
                    error(std::strcmp(optarg, "native") == 0 || std::strcmp(optarg, "io_uring") == 0
                              ? r.error().message
                              : fmt::format("Invalid aio option: {}", optarg));
                    return 1;
                }
            }
            break;
        case 'o': {
            auto v = parse_size(optarg);
            if (!v || *v > uint64_t(INT64_MAX)) {
                error("Invalid offset specified");
                return 1;
            }
            offset = *v;
            break;
        }
        case 'q': break; // qemu-img prints its two lines with -q too
        case 's': {
            auto v = parse_size(optarg);
            if (!v || *v > uint64_t(INT_MAX)) {
                error("Invalid buffer size specified");
                return 1;
            }
            size = *v;
            break;
        }
        case 'S': {
            auto v = parse_size(optarg);
            if (!v || *v > uint64_t(INT_MAX)) {
                error("Invalid step size specified");
                return 1;
            }
            step = *v;
            break;
        }
        case 't': {
            auto m = storage::parse_cache_mode(optarg);
            if (!m) {
                error(m.error().message);
                return 1;
            }
            flags.cache = *m;
            break;
        }
        case 'w': write = true; break;
        case 'U': flags.force_share = true; break;
        case OptPattern: {
            auto v = parse_count(optarg, 0xff);
            if (!v) {
                error("Invalid pattern byte specified");
                return 1;
            }
            pattern = int(*v);
            break;
        }
        case OptFlushInterval: {
            auto v = parse_count(optarg, INT_MAX);
            if (!v) {
                error("Invalid flush interval specified");
                return 1;
            }
            flush_interval = *v;
            break;
        }
        case OptNoDrain: drain_on_flush = false; break;
        case 'h':
            std::printf("usage: emu-img bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] "
                        "[-i aio] [--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] "
                        "[-t cache] [-w] [-U] filename\n");
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
    if (flush_interval && !write) {
        error("--flush-interval is only available in write tests");
        return 1;
    }
    if (flush_interval && flush_interval < depth) {
        error("Flush interval can't be smaller than depth");
        return 1;
    }
    if (step == 0)
        step = size;
    flags.read_only = !write;
    auto be = open_backend(argv[optind], flags);
    if (!be) {
        error(be.error().message);
        return 1;
    }
    storage::BlockBackend& blk = **be;
    const uint64_t image_size = blk.size();
    std::vector<std::vector<uint8_t>> buffers(size_t(std::min(depth, std::max<uint64_t>(count, 1))),
                                              std::vector<uint8_t>(size, uint8_t(pattern)));

    std::printf("Sending %llu %s requests, %llu bytes each, %llu in parallel (starting at offset %llu, step size "
                "%llu)\n", (unsigned long long)count, write ? "write" : "read", (unsigned long long)size,
                (unsigned long long)depth, (unsigned long long)offset, (unsigned long long)step);
    if (flush_interval)
        std::printf("Sending flush every %llu requests\n", (unsigned long long)flush_interval);
    std::fflush(stdout);

    Inflight st;
    auto done = [&st](storage::Result<void> r) {
        std::lock_guard lock(st.mutex);
        if (!r && !st.failure)
            st.failure = r.error();
        st.in_flight--;
        st.cv.notify_all();
    };
    std::vector<size_t> free_slots;
    for (size_t i = 0; i < buffers.size(); i++)
        free_slots.push_back(i);
    // Each request owns a buffer slot until it completes; slots return through this list.
    std::vector<size_t> returned;
    std::mutex slot_mutex;

    const auto start = std::chrono::steady_clock::now();
    uint64_t pos = offset;
    bool failed = false;
    for (uint64_t n = 0; n < count && !failed; n++) {
        size_t slot;
        {
            std::unique_lock lock(st.mutex);
            st.cv.wait(lock, [&] { return st.in_flight < buffers.size() || st.failure; });
            if (st.failure) {
                failed = true;
                break;
            }
            st.in_flight++;
        }
        {
            std::lock_guard lock(slot_mutex);
            if (free_slots.empty()) {
                free_slots = std::move(returned);
                returned.clear();
            }
            slot = free_slots.back();
            free_slots.pop_back();
        }
        auto finish = [&, slot](storage::Result<void> r) {
            {
                std::lock_guard lock(slot_mutex);
                returned.push_back(slot);
            }
            done(std::move(r));
        };
        if (write)
            blk.write_async(pos, buffers[slot], finish);
        else
            blk.read_async(pos, buffers[slot], finish);
        if (image_size)
            pos = (pos + step) % image_size;
        if (flush_interval && (n + 1) % flush_interval == 0) {
            if (drain_on_flush) {
                blk.drain();
                if (auto r = blk.flush(); !r) {
                    std::lock_guard lock(st.mutex);
                    st.failure = r.error();
                }
            } else {
                {
                    std::lock_guard lock(st.mutex);
                    st.in_flight++;
                }
                blk.flush_async(done);
            }
        }
    }
    blk.drain();
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (st.failure) {
        // Requests past the end fail as I/O errors, as qemu-img reports them.
        const int err = st.failure->err == EINVAL || st.failure->err == 0 ? EIO : st.failure->err;
        error(fmt::format("Failed request: {}", std::strerror(err)));
        return 1;
    }
    if (auto r = blk.close(); !r) {
        error(r.error().message);
        return 1;
    }
    std::printf("Run completed in %.3f seconds.\n", seconds);
    return 0;
}

} // namespace emu::img

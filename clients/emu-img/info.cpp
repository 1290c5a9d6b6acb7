// emu-img info — image information as text or JSON, optionally for the whole
// backing chain (qemu-img's keys and wording).
#include "clients/emu-img/common.h"

#include <fmt/format.h>
#include <getopt.h>
#include <iostream>

namespace emu::img {

namespace {

struct Entry {
    std::string filename;
    storage::ImageInfo info;
    std::optional<uint64_t> actual_size; // unknown over NBD
    std::string full_backing;
};

ordered_json to_json(const Entry& e)
{
    const auto& i = e.info;
    ordered_json j;
    if (!i.snapshots.empty()) {
        ordered_json snaps = ordered_json::array();
        for (const auto& s : i.snapshots) {
            ordered_json sj;
            if (s.icount)
                sj["icount"] = *s.icount;
            sj["vm-clock-nsec"] = s.vm_clock_nsec % 1000000000ull;
            sj["name"] = s.name;
            sj["date-sec"] = s.date_sec;
            sj["date-nsec"] = s.date_nsec;
            sj["vm-clock-sec"] = s.vm_clock_nsec / 1000000000ull;
            sj["id"] = s.id;
            sj["vm-state-size"] = s.vm_state_size;
            snaps.push_back(sj);
        }
        j["snapshots"] = snaps;
    }
    if (!i.backing_filename.empty() && !i.backing_format.empty())
        j["backing-filename-format"] = i.backing_format;
    j["virtual-size"] = i.virtual_size;
    j["filename"] = e.filename;
    if (i.cluster_size)
        j["cluster-size"] = *i.cluster_size;
    j["format"] = i.format;
    if (e.actual_size)
        j["actual-size"] = *e.actual_size;
    if (i.qcow2) {
        const auto& q = *i.qcow2;
        ordered_json data;
        data["compat"] = q.compat;
        data["compression-type"] = q.compression_type;
        if (q.compat != "0.10")
            data["lazy-refcounts"] = q.lazy_refcounts;
        data["refcount-bits"] = q.refcount_bits;
        if (q.compat != "0.10") {
            data["corrupt"] = q.corrupt;
            data["extended-l2"] = q.extended_l2;
        }
        j["format-specific"] = ordered_json{{"type", "qcow2"}, {"data", data}};
    }
    if (!i.backing_filename.empty()) {
        j["full-backing-filename"] = e.full_backing;
        j["backing-filename"] = i.backing_filename;
    }
    j["dirty-flag"] = i.dirty;
    return j;
}

void print_human(const Entry& e)
{
    const auto& i = e.info;
    std::string out;
    out += fmt::format("image: {}\n", e.filename);
    out += fmt::format("file format: {}\n", i.format);
    out += fmt::format("virtual size: {} ({} bytes)\n", human_size(i.virtual_size), i.virtual_size);
    out += fmt::format("disk size: {}\n", e.actual_size ? human_size(*e.actual_size) : "unavailable");
    if (i.cluster_size)
        out += fmt::format("cluster_size: {}\n", *i.cluster_size);
    if (i.dirty)
        out += "cleanly shut down: no\n";
    if (!i.backing_filename.empty()) {
        out += fmt::format("backing file: {}", i.backing_filename);
        if (e.full_backing != i.backing_filename)
            out += fmt::format(" (actual path: {})", e.full_backing);
        out += "\n";
        if (!i.backing_format.empty())
            out += fmt::format("backing file format: {}\n", i.backing_format);
    }
    if (!i.snapshots.empty())
        out += snapshot_list_text(i.snapshots);
    if (i.qcow2) {
        const auto& q = *i.qcow2;
        out += "Format specific information:\n";
        out += fmt::format("    compat: {}\n", q.compat);
        out += fmt::format("    compression type: {}\n", q.compression_type);
        if (q.compat != "0.10")
            out += fmt::format("    lazy refcounts: {}\n", q.lazy_refcounts ? "true" : "false");
        out += fmt::format("    refcount bits: {}\n", q.refcount_bits);
        if (q.compat != "0.10") {
            out += fmt::format("    corrupt: {}\n", q.corrupt ? "true" : "false");
            out += fmt::format("    extended l2: {}\n", q.extended_l2 ? "true" : "false");
        }
    }
    std::fputs(out.c_str(), stdout);
}

} // namespace

int cmd_info(int argc, char** argv)
{
    OpenFlags flags;
    flags.open_backing = false;
    std::string output = "human";
    bool chain = false;
    enum { OptOutput = 256, OptBackingChain, OptObject, OptImageOpts };
    static const option long_opts[] = {{"help", no_argument, nullptr, 'h'},
                                       {"format", required_argument, nullptr, 'f'},
                                       {"output", required_argument, nullptr, OptOutput},
                                       {"backing-chain", no_argument, nullptr, OptBackingChain},
                                       {"object", required_argument, nullptr, OptObject},
                                       {"image-opts", no_argument, nullptr, OptImageOpts},
                                       {"force-share", no_argument, nullptr, 'U'},
                                       {nullptr, 0, nullptr, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":f:hU", long_opts, nullptr)) != -1) {
        switch (c) {
        case 'f': flags.format = optarg; break;
        case 'U': flags.force_share = true; break;
        case OptOutput: output = optarg; break;
        case OptBackingChain: chain = true; break;
        case 'h': std::printf("usage: emu-img info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename\n"); return 0;
        case OptObject: case OptImageOpts: error(fmt::format("{}: not supported yet", argv[optind - 1])); return 1;
        case ':': error(fmt::format("option '{}' requires an argument", argv[optind - 1])); return 1;
        default: error(fmt::format("unrecognized option '{}'", argv[optind - 1])); return 1;
        }
    }
    if (output != "human" && output != "json") {
        error(fmt::format("--output must be used with human or json as argument."));
        return 1;
    }
    if (optind != argc - 1) {
        error(optind >= argc ? "Expecting one image file name" : fmt::format("Unexpected argument: {}", argv[optind + 1]));
        return 1;
    }
    std::string filename = argv[optind];
    if (chain)
        flags.open_backing = true;
    auto be = open_backend(filename, flags);
    if (!be) {
        error(be.error().message);
        return 1;
    }
    std::vector<Entry> entries;
    std::string name = filename;
    for (storage::BlockDriver* d = &(*be)->driver(); d; d = chain ? d->backing() : nullptr) {
        Entry e;
        e.filename = name;
        e.info = d->info();
        storage::BlockDriver* protocol = d->file() ? d->file() : d;
        if (protocol->format_name() != "nbd")
            e.actual_size = d->allocated_bytes();
        else
            e.filename = protocol->filename(); // QEMU's canonical form of the NBD name
        e.full_backing = storage::resolve_backing_path(name, e.info.backing_filename);
        name = e.full_backing;
        entries.push_back(std::move(e));
    }
    if (output == "json") {
        if (chain) {
            ordered_json arr = ordered_json::array();
            for (const auto& e : entries)
                arr.push_back(to_json(e));
            std::cout << arr.dump(4) << "\n";
        } else {
            std::cout << to_json(entries[0]).dump(4) << "\n";
        }
    } else {
        for (size_t k = 0; k < entries.size(); k++) {
            if (k)
                std::printf("\n");
            print_human(entries[k]);
        }
    }
    return 0;
}

} // namespace emu::img

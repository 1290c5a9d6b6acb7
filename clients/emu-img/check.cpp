// emu-img check — consistency check and repair with qemu-img's report and
// exit codes: 0 clean, 1 check not completed, 2 corruptions, 3 leaks only,
// 63 format without checks.
#include "clients/emu-img/common.h"

#include <cstdio>
#include <fmt/format.h>
#include <getopt.h>
#include <iostream>

namespace emu::img {

namespace {

ordered_json check_json(const storage::CheckResult& r, const std::string& filename, const std::string& format)
{
    ordered_json j;
    if (r.image_end_offset)
        j["image-end-offset"] = r.image_end_offset;
    if (r.total_clusters)
        j["total-clusters"] = r.total_clusters;
    j["check-errors"] = r.check_errors;
    if (r.corruptions)
        j["corruptions"] = r.corruptions;
    if (r.leaks)
        j["leaks"] = r.leaks;
    if (r.corruptions_fixed)
        j["corruptions-fixed"] = r.corruptions_fixed;
    if (r.leaks_fixed)
        j["leaks-fixed"] = r.leaks_fixed;
    if (r.allocated_clusters)
        j["allocated-clusters"] = r.allocated_clusters;
    if (r.fragmented_clusters)
        j["fragmented-clusters"] = r.fragmented_clusters;
    if (r.compressed_clusters)
        j["compressed-clusters"] = r.compressed_clusters;
    j["filename"] = filename;
    j["format"] = format;
    return j;
}

void check_human(const storage::CheckResult& r, bool quiet)
{
    std::string out;
    if (!r.corruptions && !r.leaks && !r.check_errors) {
        out += "No errors were found on the image.\n";
    } else {
        if (r.corruptions)
            out += fmt::format("\n{} errors were found on the image.\nData may be corrupted, or further writes to the "
                               "image may corrupt it.\n", r.corruptions);
        if (r.leaks)
            out += fmt::format("\n{} leaked clusters were found on the image.\nThis means waste of disk space, but no "
                               "harm to data.\n", r.leaks);
        if (r.check_errors)
            out += fmt::format("\n{} internal errors have occurred during the check.\n", r.check_errors);
    }
    if (r.total_clusters && r.allocated_clusters) {
        out += fmt::format("{}/{} = {:.2f}% allocated, {:.2f}% fragmented, {:.2f}% compressed clusters\n",
                           r.allocated_clusters, r.total_clusters,
                           double(r.allocated_clusters) * 100.0 / double(r.total_clusters),
                           double(r.fragmented_clusters) * 100.0 / double(r.allocated_clusters),
                           double(r.compressed_clusters) * 100.0 / double(r.allocated_clusters));
    }
    if (r.image_end_offset)
        out += fmt::format("Image end offset: {}\n", r.image_end_offset);
    if (!quiet)
        std::fputs(out.c_str(), stdout);
}

} // namespace

int cmd_check(int argc, char** argv)
{
    OpenFlags flags;
    flags.open_backing = false;
    std::string output = "human";
    bool quiet = false;
    storage::CheckRepair repair = storage::CheckRepair::None;
    enum { OptOutput = 256, OptObject, OptImageOpts };
    static const option long_opts[] = {{"help", no_argument, nullptr, 'h'},
                                       {"format", required_argument, nullptr, 'f'},
                                       {"repair", required_argument, nullptr, 'r'},
                                       {"output", required_argument, nullptr, OptOutput},
                                       {"object", required_argument, nullptr, OptObject},
                                       {"image-opts", no_argument, nullptr, OptImageOpts},
                                       {"force-share", no_argument, nullptr, 'U'},
                                       {nullptr, 0, nullptr, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":hf:r:T:qU", long_opts, nullptr)) != -1) {
        switch (c) {
        case 'f': flags.format = optarg; break;
        case 'U': flags.force_share = true; break;
        case 'q': quiet = true; break;
        case 'r':
            if (std::string(optarg) == "leaks")
                repair = storage::CheckRepair::Leaks;
            else if (std::string(optarg) == "all")
                repair = storage::CheckRepair::All;
            else {
                error("Invalid option for -r: must be 'leaks' or 'all'");
                return 1;
            }
            break;
        case 'T': {
            auto m = storage::parse_cache_mode(optarg);
            if (!m) {
                error(m.error().message);
                return 1;
            }
            flags.cache = *m;
            break;
        }
        case OptOutput: output = optarg; break;
        case 'h':
            std::printf("usage: emu-img check [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U] "
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
    std::string filename = argv[optind];
    if (repair != storage::CheckRepair::None && flags.force_share) {
        error("--force-share/-U is not allowed with -r");
        return 1;
    }
    flags.read_only = repair == storage::CheckRepair::None;
    auto be = open_backend(filename, flags);
    if (!be) {
        error(be.error().message);
        return 1;
    }
    storage::BlockDriver& drv = (*be)->driver();
    auto res = drv.check(repair);
    if (!res) {
        if (res.error().message == "This image format does not support checks") {
            error(res.error().message);
            return 63;
        }
        error(fmt::format("Check failed: {}", res.error().message));
        return 1;
    }
    for (const auto& m : res->messages)
        std::fprintf(stderr, "%s\n", m.c_str());
    storage::CheckResult final = *res;
    if (repair != storage::CheckRepair::None) {
        if (auto r = drv.flush(); !r) {
            error(r.error().message);
            return 1;
        }
        if (res->corruptions_fixed || res->leaks_fixed) {
            if (output == "human" && !quiet)
                std::printf("The following inconsistencies were found and repaired:\n\n    %llu leaked clusters\n    "
                            "%llu corruptions\n\nDouble checking the fixed image now...\n",
                            (unsigned long long)res->leaks_fixed, (unsigned long long)res->corruptions_fixed);
        }
        auto again = drv.check(storage::CheckRepair::None);
        if (!again) {
            error(fmt::format("Check failed: {}", again.error().message));
            return 1;
        }
        for (const auto& m : again->messages)
            std::fprintf(stderr, "%s\n", m.c_str());
        final = *again;
        final.leaks_fixed = res->leaks_fixed;
        final.corruptions_fixed = res->corruptions_fixed;
    }
    if (output == "json")
        std::cout << check_json(final, filename, std::string(drv.format_name())).dump(4) << "\n";
    else
        check_human(final, quiet);
    if (auto r = (*be)->close(); !r) {
        error(r.error().message);
        return 1;
    }
    if (final.check_errors)
        return 1;
    if (final.corruptions)
        return 2;
    if (final.leaks)
        return 3;
    return 0;
}

} // namespace emu::img

// emu-img snapshot — list (-l), apply (-a), create (-c) and delete (-d)
// internal snapshots, with qemu-img's messages and exit codes (0, or 1 on any
// error). Without an action nothing is done.
#include "clients/emu-img/common.h"

#include <cstring>
#include <fmt/format.h>
#include <getopt.h>

namespace emu::img {

namespace {

enum class Action { None, List, Apply, Create, Delete };

// "Could not create snapshot 'x': -95 (Operation not supported)" for a
// driver without snapshots, as qemu-img words it; our message otherwise.
std::string reason(const storage::Error& e)
{
    if (e.err == ENOTSUP)
        return fmt::format("-{} ({})", ENOTSUP, std::strerror(ENOTSUP));
    return e.message;
}

} // namespace

int cmd_snapshot(int argc, char** argv)
{
    OpenFlags flags;
    Action action = Action::None;
    std::string name;
    bool quiet = false;
    enum { OptObject = 256, OptImageOpts };
    static const option long_opts[] = {{"help", no_argument, nullptr, 'h'},
                                       {"object", required_argument, nullptr, OptObject},
                                       {"image-opts", no_argument, nullptr, OptImageOpts},
                                       {"force-share", no_argument, nullptr, 'U'},
                                       {nullptr, 0, nullptr, 0}};
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, ":la:c:d:hqU", long_opts, nullptr)) != -1) {
        Action next = Action::None;
        switch (c) {
        case 'l': next = Action::List; break;
        case 'a': next = Action::Apply; break;
        case 'c': next = Action::Create; break;
        case 'd': next = Action::Delete; break;
        case 'q': quiet = true; break;
        case 'U': flags.force_share = true; break;
        case 'h':
            std::printf("usage: emu-img snapshot [-U] [-q] [-l | -a snapshot | -c snapshot | -d snapshot] filename\n");
            return 0;
        case OptObject: case OptImageOpts: error(fmt::format("{}: not supported yet", argv[optind - 1])); return 1;
        case ':':
            error(fmt::format("missing argument for option '{}'\nTry 'emu-img --help' for more information",
                              argv[optind - 1]));
            return 1;
        default:
            error(fmt::format("unrecognized option '{}'\nTry 'emu-img --help' for more information", argv[optind - 1]));
            return 1;
        }
        if (next == Action::None)
            continue;
        if (action != Action::None) {
            error("Cannot mix '-l', '-a', '-c', '-d'\nTry 'emu-img --help' for more information");
            return 1;
        }
        action = next;
        if (next != Action::List)
            name = optarg;
    }
    (void)quiet; // nothing but the list is printed, and -q does not hide it (as qemu-img)
    if (optind != argc - 1) {
        error("Expecting one image file name\nTry 'emu-img --help' for more information");
        return 1;
    }
    const std::string filename = argv[optind];
    flags.read_only = action == Action::List || action == Action::None;
    flags.open_backing = false;
    if (flags.force_share && !flags.read_only) {
        error(fmt::format("Could not open '{}': force-share=on can only be used with read-only images", filename));
        return 1;
    }
    auto be = open_backend(filename, flags);
    if (!be) {
        error(be.error().message);
        return 1;
    }
    storage::BlockDriver& drv = (*be)->driver();
    storage::Result<void> r;
    switch (action) {
    case Action::None:
        break;
    case Action::List: {
        auto snaps = drv.info().snapshots;
        if (!snaps.empty())
            std::fputs(snapshot_list_text(snaps).c_str(), stdout);
        break;
    }
    case Action::Create: {
        storage::SnapshotInfo sn;
        sn.name = name.substr(0, 255); // qemu-img keeps 255 bytes of a name
        sn.icount = 0;                 // qemu-img records icount 0 for snapshots it takes
        r = drv.snapshot_create(sn);
        if (!r) {
            error(fmt::format("Could not create snapshot '{}': {}", name, reason(r.error())));
            return 1;
        }
        break;
    }
    case Action::Apply:
        r = drv.snapshot_goto(name);
        if (!r) {
            if (r.error().err == ENOENT)
                error(fmt::format("Could not apply snapshot '{}': Failed to load snapshot: No such file or directory",
                                  name));
            else if (r.error().err == ENOTSUP)
                error(fmt::format("Could not apply snapshot '{}': Block driver does not support snapshots", name));
            else
                error(fmt::format("Could not apply snapshot '{}': {}", name, r.error().message));
            return 1;
        }
        break;
    case Action::Delete:
        r = drv.snapshot_delete(name);
        if (!r) {
            if (r.error().err == ENOENT || r.error().err == ENOTSUP)
                error(fmt::format("Could not delete snapshot '{}': snapshot not found", name));
            else
                error(fmt::format("Could not delete snapshot '{}': {}", name, r.error().message));
            return 1;
        }
        break;
    }
    if (auto cr = (*be)->close(); !cr) {
        error(cr.error().message);
        return 1;
    }
    return 0;
}

} // namespace emu::img

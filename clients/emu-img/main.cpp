// emu-img — the stand-alone image tool (qemu-img's subcommands, options,
// output and exit codes). Subcommands not implemented yet are refused.
#include "clients/emu-img/common.h"

#include <cstdio>
#include <cstring>
#include <string_view>

using namespace emu::img;

namespace {

const char* k_usage = R"(emu-img version 0.1.0 (emud)
usage: emu-img [standard options] command [command options]
emud's disk image utility, compatible with qemu-img.

Command syntax (supported now):
  check [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U] filename
  compare [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] filename1 filename2
  convert [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] [-B backing_file [-F backing_fmt]] [-o options] [-S sparse_size] [-U] filename [filename2 [...]] output_filename
  create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]
  info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename
  map [--object objectdef] [-f fmt] [--start-offset=offset] [--max-length=len] [--output=ofmt] [-U] filename

Not supported yet: amend, bench, bitmap, commit, dd, measure, rebase, resize, snapshot.
Supported formats: raw qcow2
)";

struct Command {
    const char* name;
    int (*run)(int, char**);
};

const Command k_commands[] = {
    {"check", cmd_check},     {"compare", cmd_compare}, {"convert", cmd_convert},
    {"create", cmd_create},   {"info", cmd_info},       {"map", cmd_map},
};

const char* const k_not_yet[] = {"amend", "bench", "bitmap", "commit", "dd", "measure", "rebase", "resize", "snapshot"};

} // namespace

int main(int argc, char** argv)
{
    if (argc < 2) {
        error("Not enough arguments\nTry 'emu-img --help' for more information");
        return 1;
    }
    std::string_view cmd = argv[1];
    if (cmd == "-h" || cmd == "--help") {
        std::fputs(k_usage, stdout);
        return 0;
    }
    if (cmd == "-V" || cmd == "--version") {
        std::printf("emu-img version 0.1.0 (emud)\n");
        return 0;
    }
    for (const auto& c : k_commands) {
        if (cmd == c.name)
            return c.run(argc - 1, argv + 1);
    }
    for (const char* n : k_not_yet) {
        if (cmd == n) {
            error(std::string(n) + ": not supported yet");
            return 1;
        }
    }
    error("Command not found: " + std::string(cmd));
    return 1;
}

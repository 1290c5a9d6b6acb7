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

Command syntax:
  amend [-p] [-q] [-f fmt] [-t cache] [--force] -o options filename
  bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-i aio] [--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] [-t cache] [-w] [-U] filename
  check [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-T src_cache] [-U] filename
  commit [-q] [-f fmt] [-t cache] [-b base] [-r rate_limit] [-d] [-p] filename
  compare [-f fmt] [-F fmt] [-T src_cache] [-p] [-q] [-s] [-U] filename1 filename2
  convert [-c] [-p] [-q] [-n] [-f fmt] [-t cache] [-T src_cache] [-O output_fmt] [-B backing_file [-F backing_fmt]] [-o options] [-S sparse_size] [-U] filename [filename2 [...]] output_filename
  create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]
  dd [-U] [-f fmt] [-O output_fmt] [bs=block_size] [count=blocks] [skip=blocks] if=input of=output
  info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename
  map [-f fmt] [--start-offset=offset] [--max-length=len] [--output=ofmt] [-U] filename
  measure [--output=ofmt] [-O output_fmt] [-o options] [--size N | [-f fmt] filename]
  snapshot [-U] [-q] [-l | -a snapshot | -c snapshot | -d snapshot] filename
  rebase [-U] [-q] [-f fmt] [-t cache] [-T src_cache] [-p] [-u] -b backing_file [-F backing_fmt] filename
  resize [-f fmt] [--preallocation=prealloc] [-q] [--shrink] filename [+ | -]size

Not supported yet: bitmap.
Supported formats: raw qcow2
)";

struct Command {
    const char* name;
    int (*run)(int, char**);
};

const Command k_commands[] = {
    {"check", cmd_check},     {"compare", cmd_compare}, {"convert", cmd_convert},
    {"create", cmd_create},   {"info", cmd_info},       {"map", cmd_map},
    {"snapshot", cmd_snapshot}, {"resize", cmd_resize},   {"commit", cmd_commit},
    {"rebase", cmd_rebase},     {"amend", cmd_amend},     {"measure", cmd_measure},
    {"dd", cmd_dd},             {"bench", cmd_bench},
};

const char* const k_not_yet[] = {"bitmap"};

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

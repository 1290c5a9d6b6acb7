// clients/emu-img/common.h — helpers shared by the emu-img subcommands:
// qemu-img's size syntax and size printing, -o option lists, error output,
// image opening with the tool's flags.
#pragma once

#include "storage/backend.h"

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace emu::img {

using ordered_json = nlohmann::ordered_json;

// Prints "emu-img: MESSAGE" to stderr.
void error(const std::string& message);

// An -o option list, in the order given; ",," is a literal comma.
struct OptionList {
    std::vector<std::pair<std::string, std::string>> items;
    bool help = false;
};

// qemu-img sizes: a number with an optional k/K, M, G, T, P, E suffix (binary
// units), "b"/"B" for bytes; fractions allowed with a suffix.
std::optional<uint64_t> parse_size(const std::string& text);
// qemu's human sizes: "196 KiB", "1 GiB", "1.5 MiB".
std::string human_size(uint64_t bytes);

// qemu-img's progress line ("    (42.00/100%)\r"), shown with -p.
struct Progress {
    bool on = false;
    double last = -1;
    void show(uint64_t done, uint64_t total);
    void finish();
};

// Creates an image the way `create` does (format, -o options, size); shared
// by convert, dd. Returns qemu-img's exit code (0 or 1) and prints errors.
int create_image(const std::string& format, const std::string& filename, const OptionList& opts,
                 std::optional<uint64_t> size, bool quiet, bool check_backing, uint64_t* size_out);

// The "Snapshot list:" table of info and snapshot -l.
std::string snapshot_list_text(const std::vector<storage::SnapshotInfo>& snapshots);


bool parse_option_list(const std::string& text, OptionList& out, std::string& err);
std::optional<bool> parse_bool(const std::string& text);

struct OpenFlags {
    std::string format;
    bool read_only = true;
    bool force_share = false;
    bool open_backing = true;
    storage::CacheMode cache = storage::CacheMode::Writeback;
};
storage::Result<std::unique_ptr<storage::BlockBackend>> open_backend(const std::string& filename, const OpenFlags& flags);

// The status of [offset, offset+bytes) through a backing chain: the first
// layer that decides it, and its depth (0 = top). Unallocated everywhere:
// depth of the bottom layer, allocated=false.
struct ChainStatus {
    storage::BlockStatus status;
    int depth = 0;
    storage::BlockDriver* layer = nullptr;
};
storage::Result<ChainStatus> chain_status(storage::BlockDriver& top, uint64_t offset, uint64_t bytes);

// Subcommands: each takes argv with argv[0] = the subcommand name.
int cmd_create(int argc, char** argv);
int cmd_info(int argc, char** argv);
int cmd_check(int argc, char** argv);
int cmd_convert(int argc, char** argv);
int cmd_compare(int argc, char** argv);
int cmd_map(int argc, char** argv);
int cmd_snapshot(int argc, char** argv);
int cmd_resize(int argc, char** argv);
int cmd_commit(int argc, char** argv);
int cmd_rebase(int argc, char** argv);
int cmd_amend(int argc, char** argv);
int cmd_measure(int argc, char** argv);
int cmd_dd(int argc, char** argv);
int cmd_bench(int argc, char** argv);

} // namespace emu::img

// clients/emu-nbd/emu_nbd.h — what the parts of emu-nbd share: the parsed
// command line, image opening (plain names, --image-opts, -s, -l), --object
// tls-creds-x509, the kernel client (-c/-d) and the export listing (-L).
#pragma once

#include "storage/backend.h"
#include "storage/nbd/server.h"
#include "storage/nbd/tls.h"

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace emu::nbdtool {

// Prints "emu-nbd: MESSAGE" to stderr.
void error(const std::string& message);

struct Options {
    std::string filename;
    std::string format;
    bool image_opts = false;
    bool read_only = false;
    bool snapshot = false;
    std::string load_snapshot;
    bool persistent = false;
    std::string export_name;
    std::string description;
    int shared = 1;
    uint64_t offset = 0;
    std::string cache = "writeback";
    std::string aio = "threads";
    std::string discard = "ignore";
    std::string detect_zeroes = "off";
    std::string bind = "0.0.0.0";
    std::string port = "10809";
    std::string socket;
    std::vector<std::string> objects;
    std::string tls_creds;
    bool fork = false;
    std::string pid_file;
    bool verbose = false;
    std::string connect_device;
    bool disconnect = false;
    bool list = false;
};

// --object tls-creds-x509,id=ID,dir=DIR,endpoint=server|client,verify-peer=on|off
struct TlsObject {
    std::string id;
    storage::nbd::TlsOptions options;
};
storage::Result<std::map<std::string, TlsObject>> parse_objects(const std::vector<std::string>& specs);

// The image as the options describe it (format, cache, discard, detect-zeroes,
// read-only, -s temporary overlay, -l internal snapshot).
storage::Result<std::shared_ptr<storage::BlockBackend>> open_image(const Options& o);

// -c DEV: serves the image to the kernel's NBD client through a socket pair;
// returns when the device is disconnected. -d DEV.
int connect_device(const Options& o, storage::nbd::NbdServer& server);
int disconnect_device(const std::string& device);

// -L: lists the exports of a server.
int list_exports(const Options& o, const std::shared_ptr<storage::nbd::TlsCredentials>& tls,
                 const std::string& tls_dir);

} // namespace emu::nbdtool

// emu-nbd — exports an image over NBD (qemu-nbd's options, messages and exit
// codes). Without -t the server exits once its last client has gone. Options
// that are not implemented are refused by name, never ignored.
#include "clients/emu-nbd/emu_nbd.h"

#include "common/log.h"
#include "storage/nbd/address.h"
#include "storage/nbd/channel.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fmt/format.h>
#include <getopt.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

namespace emu::nbdtool {

void error(const std::string& message)
{
    std::fflush(stdout);
    std::fprintf(stderr, "emu-nbd: %s\n", message.c_str());
}

} // namespace emu::nbdtool

using namespace emu::nbdtool;
namespace st = emu::storage;
namespace nbd = emu::storage::nbd;

namespace {

const char* k_usage = R"(Usage: emu-nbd [OPTIONS] FILE
  or:  emu-nbd -L [OPTIONS]
  or:  emu-nbd -d DEV
Exports a disk image over the NBD protocol (compatible with qemu-nbd).

  -h, --help                display this help and exit
  -V, --version             output version information and exit

Connection properties:
  -p, --port=PORT           port to listen on (default 10809)
  -b, --bind=IFACE          interface to bind to (default 0.0.0.0)
  -k, --socket=PATH         listen on a unix socket instead of TCP
  -e, --shared=NUM          serve up to NUM clients at once (default 1, 0: no limit)
  -t, --persistent          keep running when the last client disconnects
  -v, --verbose             report clients connecting and disconnecting
  -x, --export-name=NAME    name of the export (default: the empty name)
  -D, --description=TEXT    a description of the export, for clients to show

Exposing part of the image:
  -o, --offset=OFFSET       export the image from this byte on

General purpose options:
  -L, --list                list the exports of another NBD server
  --object type,id=ID,...   tls-creds-x509,id=ID,dir=DIR,endpoint=server|client[,verify-peer=on|off]
  --tls-creds=ID            require TLS with the credentials of an --object
  --fork                    run in the background once the server listens
  --pid-file=PATH           write the server's process id to PATH

Kernel NBD client support:
  -c, --connect=DEV         connect FILE to the local NBD device DEV
  -d, --disconnect          disconnect the specified device

Block device options:
  -f, --format=FORMAT       image format (raw, qcow2)
  -r, --read-only           export read-only
  -s, --snapshot            write to a temporary overlay, never to FILE
  -l, --load-snapshot=SNAPSHOT_PARAM
                            export an internal snapshot read-only:
                            'snapshot.id=[ID],snapshot.name=[NAME]' or '[ID_OR_NAME]'
  -n, --nocache             same as --cache=none
      --cache=MODE          none, writeback (default), writethrough, directsync, unsafe
      --aio=MODE            threads (native and io_uring are not supported)
      --discard=MODE        ignore (default), unmap
      --detect-zeroes=MODE  off (default), on, unmap
      --image-opts          FILE is a list of image options (driver=…,file.filename=…)

Not supported: -A/--allocation-depth, -B/--bitmap, -T/--trace, --tls-authz,
--selinux-label.
)";

enum LongOnly {
    OptCache = 256,
    OptAio,
    OptDiscard,
    OptDetectZeroes,
    OptImageOpts,
    OptObject,
    OptTlsCreds,
    OptTlsAuthz,
    OptFork,
    OptPidFile,
    OptSelinux,
};

const option k_options[] = {
    {"help", no_argument, nullptr, 'h'},
    {"version", no_argument, nullptr, 'V'},
    {"port", required_argument, nullptr, 'p'},
    {"bind", required_argument, nullptr, 'b'},
    {"socket", required_argument, nullptr, 'k'},
    {"shared", required_argument, nullptr, 'e'},
    {"persistent", no_argument, nullptr, 't'},
    {"verbose", no_argument, nullptr, 'v'},
    {"export-name", required_argument, nullptr, 'x'},
    {"description", required_argument, nullptr, 'D'},
    {"offset", required_argument, nullptr, 'o'},
    {"list", no_argument, nullptr, 'L'},
    {"connect", required_argument, nullptr, 'c'},
    {"disconnect", no_argument, nullptr, 'd'},
    {"format", required_argument, nullptr, 'f'},
    {"read-only", no_argument, nullptr, 'r'},
    {"snapshot", no_argument, nullptr, 's'},
    {"load-snapshot", required_argument, nullptr, 'l'},
    {"nocache", no_argument, nullptr, 'n'},
    {"allocation-depth", no_argument, nullptr, 'A'},
    {"bitmap", required_argument, nullptr, 'B'},
    {"trace", required_argument, nullptr, 'T'},
    {"cache", required_argument, nullptr, OptCache},
    {"aio", required_argument, nullptr, OptAio},
    {"discard", required_argument, nullptr, OptDiscard},
    {"detect-zeroes", required_argument, nullptr, OptDetectZeroes},
    {"image-opts", no_argument, nullptr, OptImageOpts},
    {"object", required_argument, nullptr, OptObject},
    {"tls-creds", required_argument, nullptr, OptTlsCreds},
    {"tls-authz", required_argument, nullptr, OptTlsAuthz},
    {"fork", no_argument, nullptr, OptFork},
    {"pid-file", required_argument, nullptr, OptPidFile},
    {"selinux-label", required_argument, nullptr, OptSelinux},
    {nullptr, 0, nullptr, 0},
};

int usage_error(const std::string& message)
{
    error(message);
    std::fprintf(stderr, "Try 'emu-nbd --help' for more information.\n");
    return 1;
}

// Returns -1 to go on, else the exit code.
int parse_args(int argc, char** argv, Options& o)
{
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hVp:b:k:e:tvx:D:o:Lc:df:rsl:nAB:T:", k_options, nullptr)) != -1) {
        switch (c) {
        case 'h': std::fputs(k_usage, stdout); return 0;
        case 'V': std::printf("emu-nbd version 0.1.0 (emud)\n"); return 0;
        case 'p': o.port = optarg; break;
        case 'b': o.bind = optarg; break;
        case 'k': o.socket = optarg; break;
        case 'e': {
            char* end = nullptr;
            errno = 0;
            long n = std::strtol(optarg, &end, 0);
            if (!*optarg || *end || errno || n < 0 || n > 65535)
                return usage_error(fmt::format("Invalid shared device number '{}'", optarg));
            o.shared = int(n);
            break;
        }
        case 't': o.persistent = true; break;
        case 'v': o.verbose = true; break;
        case 'x': o.export_name = optarg; break;
        case 'D': o.description = optarg; break;
        case 'o': {
            char* end = nullptr;
            errno = 0;
            unsigned long long n = std::strtoull(optarg, &end, 0);
            if (!*optarg || *end || errno || optarg[0] == '-')
                return usage_error(fmt::format("Invalid offset '{}'", optarg));
            o.offset = n;
            break;
        }
        case 'L': o.list = true; break;
        case 'c': o.connect_device = optarg; break;
        case 'd': o.disconnect = true; break;
        case 'f': o.format = optarg; break;
        case 'r': o.read_only = true; break;
        case 's': o.snapshot = true; break;
        case 'l': o.load_snapshot = optarg; break;
        case 'n': o.cache = "none"; break;
        case 'A': return usage_error("-A/--allocation-depth (qemu:allocation-depth) is not supported");
        case 'B': return usage_error("-B/--bitmap (dirty bitmaps) is not supported");
        case 'T': return usage_error("-T/--trace is not supported");
        case OptCache: o.cache = optarg; break;
        case OptAio: o.aio = optarg; break;
        case OptDiscard: o.discard = optarg; break;
        case OptDetectZeroes: o.detect_zeroes = optarg; break;
        case OptImageOpts: o.image_opts = true; break;
        case OptObject: o.objects.push_back(optarg); break;
        case OptTlsCreds: o.tls_creds = optarg; break;
        case OptTlsAuthz: return usage_error("--tls-authz is not supported");
        case OptFork: o.fork = true; break;
        case OptPidFile: o.pid_file = optarg; break;
        case OptSelinux: return usage_error("--selinux-label is not supported");
        case ':': return usage_error(fmt::format("option '{}' requires an argument", argv[optind - 1]));
        default:
            if (optopt)
                return usage_error(fmt::format("invalid option -- '{}'", char(optopt)));
            return usage_error(fmt::format("unrecognized option '{}'", argv[optind - 1]));
        }
    }
    return -1;
}

sigset_t g_signals;

// --fork: the parent waits until the child listens (or fails), then exits.
int g_ready_fd = -1;

void report_ready(int status)
{
    if (g_ready_fd < 0)
        return;
    uint8_t b = uint8_t(status);
    (void)!write(g_ready_fd, &b, 1);
    close(g_ready_fd);
    g_ready_fd = -1;
}

int fork_and_wait()
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) {
        error(fmt::format("Failed to fork: {}", std::strerror(errno)));
        return 1;
    }
    pid_t pid = fork();
    if (pid < 0) {
        error(fmt::format("Failed to fork: {}", std::strerror(errno)));
        return 1;
    }
    if (pid == 0) {
        close(fds[0]);
        g_ready_fd = fds[1];
        setsid();
        return -1;
    }
    close(fds[1]);
    uint8_t status = 1;
    ssize_t n;
    do
        n = read(fds[0], &status, 1);
    while (n < 0 && errno == EINTR);
    if (n != 1) {
        int ws = 0;
        waitpid(pid, &ws, 0);
        return 1;
    }
    return status;
}

int serve(const Options& o)
{
    // Credentials.
    auto objects = parse_objects(o.objects);
    if (!objects) {
        error(objects.error().message);
        return 1;
    }
    std::shared_ptr<nbd::TlsCredentials> tls;
    if (!o.tls_creds.empty()) {
        auto it = objects->find(o.tls_creds);
        if (it == objects->end()) {
            error(fmt::format("Failed to get TLS creds: No TLS credentials with id '{}'", o.tls_creds));
            return 1;
        }
        if (o.list ? it->second.options.endpoint != nbd::TlsEndpoint::Client
                   : it->second.options.endpoint != nbd::TlsEndpoint::Server) {
            error(fmt::format("Expecting TLS credentials with a {} endpoint", o.list ? "client" : "server"));
            return 1;
        }
        if (o.list)
            return list_exports(o, nullptr, it->second.options.dir);
        auto loaded = nbd::TlsCredentials::load(it->second.options);
        if (!loaded) {
            error(loaded.error().message);
            return 1;
        }
        tls = *loaded;
    }
    if (o.list)
        return list_exports(o, nullptr, {});

    auto backend = open_image(o);
    if (!backend) {
        error(backend.error().message);
        return 1;
    }
    if (o.offset > (*backend)->size()) {
        error(fmt::format("Offset {} is beyond the end of the image ({} bytes)", o.offset, (*backend)->size()));
        return 1;
    }

    // Signals (blocked in every thread since main()) and the "last client
    // left" wake-up arrive as file descriptors.
    int sig_fd = signalfd(-1, &g_signals, SFD_CLOEXEC);
    int done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

    nbd::ServerOptions so;
    so.max_connections = size_t(o.shared);
    so.tls = tls;
    const bool persistent = o.persistent;
    const bool verbose = o.verbose;
    so.on_event = [persistent, verbose, done_fd](const nbd::ServerEvent& e) {
        using Kind = nbd::ServerEvent::Kind;
        if (verbose) {
            switch (e.kind) {
            case Kind::Connected: error(fmt::format("client {} connected", e.peer)); break;
            case Kind::Refused: error(fmt::format("client {} refused: {}", e.peer, e.reason)); break;
            case Kind::Transmission: error(fmt::format("client {} uses export '{}'", e.peer, e.export_name)); break;
            case Kind::Disconnected:
                error(e.reason.empty() ? fmt::format("client {} disconnected", e.peer)
                                       : fmt::format("client {} disconnected: {}", e.peer, e.reason));
                break;
            }
        } else if (e.kind == Kind::Disconnected && !e.reason.empty() && e.error != nbd::k_peer_closed) {
            error(fmt::format("Disconnect client, due to: {}", e.reason));
        }
        if (e.kind == Kind::Disconnected && e.connections == 0 && !persistent) {
            uint64_t one = 1;
            (void)!write(done_fd, &one, sizeof one);
        }
    };
    nbd::NbdServer server(so);
    nbd::ExportOptions eo;
    eo.offset = o.offset;
    if (auto r = server.add_export(o.export_name, o.description, *backend, !(*backend)->read_only(), eo); !r) {
        error(r.error().message);
        return 1;
    }
    if (!o.connect_device.empty()) {
        report_ready(0);
        int rc = connect_device(o, server);
        server.stop();
        return rc;
    }
    std::string address;
    if (!o.socket.empty()) {
        address = "unix:" + o.socket;
    } else {
        std::string host = o.bind;
        address = host.find(':') != std::string::npos ? fmt::format("[{}]:{}", host, o.port)
                                                      : fmt::format("{}:{}", host, o.port);
    }
    auto bound = server.listen(address);
    if (!bound) {
        error(bound.error().message);
        return 1;
    }
    if (!o.pid_file.empty()) {
        FILE* f = std::fopen(o.pid_file.c_str(), "w");
        if (!f) {
            error(fmt::format("Failed to write pid file '{}': {}", o.pid_file, std::strerror(errno)));
            return 1;
        }
        std::fprintf(f, "%d\n", int(getpid()));
        std::fclose(f);
    }
    if (verbose)
        error(fmt::format("listening on {}", *bound));
    if (g_ready_fd >= 0) {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
            close(null);
        }
        report_ready(0);
    }

    pollfd fds[2] = {{sig_fd, POLLIN, 0}, {done_fd, POLLIN, 0}};
    while (true) {
        if (poll(fds, 2, -1) < 0 && errno != EINTR)
            break;
        if (fds[0].revents) {
            signalfd_siginfo si{};
            if (read(sig_fd, &si, sizeof si) == sizeof si && si.ssi_signo == SIGPIPE)
                continue;
            break;
        }
        if (fds[1].revents) {
            uint64_t v;
            (void)!read(done_fd, &v, sizeof v);
            if (server.connection_count() == 0)
                break;
        }
    }
    server.stop();
    if (!o.pid_file.empty())
        unlink(o.pid_file.c_str());
    if (auto r = (*backend)->close(); !r) {
        error(r.error().message);
        return 1;
    }
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    // Blocked before any thread exists (the block layer's workers start when
    // the image opens), so that only the main thread's signalfd sees them.
    sigemptyset(&g_signals);
    sigaddset(&g_signals, SIGINT);
    sigaddset(&g_signals, SIGTERM);
    sigaddset(&g_signals, SIGHUP);
    sigaddset(&g_signals, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &g_signals, nullptr);
    Options o;
    if (int rc = parse_args(argc, argv, o); rc >= 0)
        return rc;
    const int rest = argc - optind;
    if (o.disconnect) {
        if (rest != 1)
            return usage_error("Invalid number of arguments");
        return disconnect_device(argv[optind]);
    }
    if (o.list) {
        if (rest != 0)
            return usage_error("Invalid number of arguments");
        if (o.snapshot || o.read_only || !o.load_snapshot.empty() || !o.connect_device.empty())
            return usage_error("-L takes no image options");
    } else {
        if (rest != 1)
            return usage_error("Invalid number of arguments");
        o.filename = argv[optind];
    }
    if (!o.connect_device.empty() && (o.fork || !o.socket.empty()))
        return usage_error("-c cannot be combined with --fork or -k");
    if (o.verbose)
        emu::set_log_level(emu::LogLevel::Debug);
    if (o.fork) {
        if (int rc = fork_and_wait(); rc >= 0)
            return rc;
    }
    int rc = serve(o);
    report_ready(uint8_t(rc == 0 ? 0 : 1));
    return rc;
}

// emud — the virtualization daemon. Parses options, opens the control
// endpoints, and runs the loop until SIGTERM/SIGINT or 'quit'.
#include "common/log.h"
#include "daemon/daemon.h"
#include "daemon/vm.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <getopt.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

using namespace emu;

namespace {

const char* k_usage = R"(Usage: emud [OPTIONS]
Hosts virtual machines and serves QMP on a control socket.

  -s, --socket PATH       control socket (default: STATE-DIR/emud.sock)
  -l, --listen HOST:PORT  also serve the control endpoint on TCP (off by default;
                          anyone who can connect controls every VM)
  -S, --state-dir DIR     where VM endpoint sockets live (default:
                          $XDG_RUNTIME_DIR/emud, or /run/emud for root)
  -L, --log-level LEVEL   error, warn, info or debug (default: warn)
  -f, --foreground        stay in the foreground (the default)
  -d, --daemonize         detach from the terminal once the sockets listen
  -p, --pidfile PATH      write the daemon's pid to PATH
      --check-returns     abort when a reply breaks the QMP schema (for tests)
  -V, --version           print the version and exit
  -h, --help              print this help and exit
)";

std::string default_state_dir()
{
    if (getuid() == 0)
        return "/run/emud";
    if (const char* xdg = getenv("XDG_RUNTIME_DIR"); xdg && *xdg)
        return std::string(xdg) + "/emud";
    return "/tmp/emud-" + std::to_string(getuid());
}

bool mkdir_p(const std::string& path)
{
    for (size_t pos = 1; pos <= path.size(); pos++) {
        if (pos == path.size() || path[pos] == '/') {
            std::string part = path.substr(0, pos);
            if (mkdir(part.c_str(), 0700) != 0 && errno != EEXIST)
                return false;
        }
    }
    return true;
}

std::string absolute(const std::string& path)
{
    if (path.empty() || path[0] == '/')
        return path;
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd))
        return path;
    return std::string(cwd) + "/" + path;
}

// The first fork of --daemonize waits on this pipe for the child's "ready".
int g_ready_pipe = -1;

void report_ready(bool ok)
{
    if (g_ready_pipe >= 0) {
        char c = ok ? 1 : 0;
        (void)!write(g_ready_pipe, &c, 1);
        close(g_ready_pipe);
        g_ready_pipe = -1;
    }
}

bool daemonize()
{
    int fds[2];
    if (pipe(fds) != 0)
        return false;
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid > 0) {
        close(fds[1]);
        char c = 0;
        ssize_t n = read(fds[0], &c, 1);
        _exit(n == 1 && c == 1 ? 0 : 1);
    }
    close(fds[0]);
    setsid();
    if (fork() > 0)
        _exit(0);
    g_ready_pipe = fds[1];
    return true;
}

void detach_stdio()
{
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        // stderr stays where it was when a log file was given by redirection;
        // to a terminal it goes away with the terminal.
        if (isatty(STDERR_FILENO))
            dup2(null, STDERR_FILENO);
        close(null);
    }
}

void raise_fd_limit()
{
    // Every client connection is a descriptor; a busy daemon needs more
    // than the usual soft limit of 1024.
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

} // namespace

int main(int argc, char** argv)
{
    daemon::Options opts;
    bool check_returns = false;
    static const option long_opts[] = {
        {"socket", required_argument, nullptr, 's'},    {"listen", required_argument, nullptr, 'l'},
        {"state-dir", required_argument, nullptr, 'S'}, {"log-level", required_argument, nullptr, 'L'},
        {"foreground", no_argument, nullptr, 'f'},      {"daemonize", no_argument, nullptr, 'd'},
        {"pidfile", required_argument, nullptr, 'p'},   {"check-returns", no_argument, nullptr, 'C'},
        {"version", no_argument, nullptr, 'V'},         {"help", no_argument, nullptr, 'h'},
        {nullptr, 0, nullptr, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "s:l:S:L:fdp:Vh", long_opts, nullptr)) != -1) {
        switch (c) {
        case 's':
            opts.socket_path = absolute(optarg);
            break;
        case 'l':
            opts.listen = optarg;
            break;
        case 'S':
            opts.state_dir = absolute(optarg);
            break;
        case 'L': {
            LogLevel level;
            if (!parse_log_level(optarg, level)) {
                fprintf(stderr, "emud: --log-level: '%s' is not one of error, warn, info, debug\n", optarg);
                return 2;
            }
            set_log_level(level);
            break;
        }
        case 'f':
            opts.daemonize = false;
            break;
        case 'd':
            opts.daemonize = true;
            break;
        case 'p':
            opts.pidfile = absolute(optarg);
            break;
        case 'C':
            check_returns = true;
            break;
        case 'V':
            printf("emud 0.1.0 (QMP interface of QEMU 2.10.1)\n");
            return 0;
        case 'h':
            fputs(k_usage, stdout);
            return 0;
        default:
            fputs(k_usage, stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "emud: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    opts.check_returns = check_returns;
    if (opts.state_dir.empty())
        opts.state_dir = default_state_dir();
    if (opts.socket_path.empty())
        opts.socket_path = opts.state_dir + "/emud.sock";
    if (!mkdir_p(opts.state_dir)) {
        fprintf(stderr, "emud: cannot create state directory %s: %s\n", opts.state_dir.c_str(), strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    // A disk image hitting the file size limit is an I/O error (EFBIG) for
    // its drive's werror policy, not the end of the daemon and every VM.
    signal(SIGXFSZ, SIG_IGN);
    raise_fd_limit();
    if (opts.daemonize && !daemonize()) {
        fprintf(stderr, "emud: cannot daemonize: %s\n", strerror(errno));
        return 1;
    }

    daemon::Loop loop;
    daemon::Daemon d(loop, opts);
    // SIGTERM / SIGINT: end every VM cleanly and exit. Installed before the
    // sockets listen, so a client that sees the socket can always stop us cleanly.
    uv_signal_t sigterm, sigint;
    for (auto [handle, signum] : {std::pair{&sigterm, SIGTERM}, {&sigint, SIGINT}}) {
        uv_signal_init(loop.uv(), handle);
        handle->data = &d;
        uv_signal_start(
            handle,
            [](uv_signal_t* h, int signum) {
                log_info("signal {}: shutting down", signum);
                static_cast<daemon::Daemon*>(h->data)->shutdown(devices::ShutdownCause::HostSignal);
                uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
            },
            signum);
        uv_unref(reinterpret_cast<uv_handle_t*>(handle));
    }

    if (auto ok = d.start(); !ok) {
        log_error("{}", ok.error());
        report_ready(false);
        return 1;
    }
    if (!opts.pidfile.empty()) {
        FILE* f = fopen(opts.pidfile.c_str(), "w");
        if (!f) {
            log_error("cannot write pidfile {}: {}", opts.pidfile, strerror(errno));
            report_ready(false);
            return 1;
        }
        fprintf(f, "%d\n", getpid());
        fclose(f);
    }

    sd_notify(0, "READY=1");
    if (opts.daemonize) {
        report_ready(true);
        detach_stdio();
    }
    loop.run();
    // Close the signal handles if shutdown came from 'quit'.
    for (uv_signal_t* h : {&sigterm, &sigint})
        if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(h)))
            uv_close(reinterpret_cast<uv_handle_t*>(h), nullptr);
    uv_run(loop.uv(), UV_RUN_NOWAIT);
    if (!opts.pidfile.empty())
        unlink(opts.pidfile.c_str());
    log_info("exiting");
    return 0;
}

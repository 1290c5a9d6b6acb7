// Unit tests: the human monitor over a fake QMP executor (protocol/hmp).
#include "protocol/hmp/hmp.h"

#include <doctest/doctest.h>

using namespace emu;
using json = nlohmann::json;

TEST_CASE("HMP commands call their QMP twins and format the result")
{
    std::vector<std::string> called;
    hmp::Executor exec = [&](const std::string& cmd, const json&) -> qmp::Result<json> {
        called.push_back(cmd);
        if (cmd == "query-status")
            return json{{"running", false}, {"singlestep", false}, {"status", "prelaunch"}};
        if (cmd == "query-cpus")
            return json::array({{{"CPU", 0}, {"current", true}, {"pc", 0xffffffff81000000ull}, {"halted", false},
                                 {"thread_id", 11}},
                                {{"CPU", 1}, {"current", false}, {"pc", 0x1000}, {"halted", true}, {"thread_id", 12}}});
        if (cmd == "cont")
            return qmp::fail("Resetting the Virtual Machine is required");
        return json::object();
    };
    CHECK(hmp::run("info status", exec) == "VM status: paused (prelaunch)\n");
    CHECK(hmp::run("  info   cpus ", exec) == "* CPU #0: pc=0xffffffff81000000 thread_id=11\n"
                                                "  CPU #1: pc=0x0000000000001000 (halted) thread_id=12\n");
    CHECK(hmp::run("c", exec) == "Error: Resetting the Virtual Machine is required\n");
    CHECK(hmp::run("stop", exec) == "");
    CHECK(hmp::run("q", exec) == "");
    CHECK(called == std::vector<std::string>{"query-status", "query-cpus", "cont", "stop", "quit"});
    CHECK(hmp::run("bogus", exec) == "unknown command: 'bogus'\n");
    CHECK(hmp::run("info bogus", exec) == "unknown command: 'info bogus'\n");
    CHECK(hmp::run("", exec) == "");
    CHECK(hmp::run("help", exec).find("system_powerdown") != std::string::npos);
    CHECK(hmp::run("help info", exec).find("info status") != std::string::npos);
    CHECK(hmp::run("help stop", exec) == "stop|s -- stop emulation\n");
}

TEST_CASE("HMP nbd_server_* build QEMU 2.10's QMP arguments; -a exports every drive with a medium")
{
    std::vector<std::pair<std::string, json>> called;
    bool fail_add = false;
    hmp::Executor exec = [&](const std::string& cmd, const json& args) -> qmp::Result<json> {
        called.emplace_back(cmd, args);
        if (cmd == "query-block")
            return json::array({{{"device", "virtio0"}, {"inserted", json::object()}},
                                {{"device", "ide1-cd0"}},
                                {{"device", "ide0-hd0"}, {"inserted", json::object()}}});
        if (cmd == "nbd-server-add" && fail_add)
            return qmp::fail("NBD server already has export named 'virtio0'");
        return json::object();
    };
    CHECK(hmp::run("nbd_server_start [::1]:10809", exec) == "");
    REQUIRE(called.size() == 1);
    CHECK(called[0].second == json{{"addr", {{"type", "inet"}, {"data", {{"host", "::1"}, {"port", "10809"}}}}}});
    called.clear();
    CHECK(hmp::run("nbd_server_start -a -w unix:/tmp/x.sock", exec) == "");
    REQUIRE(called.size() == 4);
    CHECK(called[0].second["addr"] == json{{"type", "unix"}, {"data", {{"path", "/tmp/x.sock"}}}});
    CHECK(called[1].first == "query-block");
    CHECK(called[2].second == json{{"device", "virtio0"}, {"writable", true}});
    CHECK(called[3].second == json{{"device", "ide0-hd0"}, {"writable", true}});
    called.clear();
    fail_add = true;
    CHECK(hmp::run("nbd_server_start -a 127.0.0.1:0", exec) ==
          "Error: NBD server already has export named 'virtio0'\n");
    REQUIRE(called.size() == 4);
    CHECK(called[2].second == json{{"device", "virtio0"}, {"writable", false}});
    CHECK(called[3].first == "nbd-server-stop");
    called.clear();
    fail_add = false;
    CHECK(hmp::run("nbd_server_add -w virtio0 disk", exec) == "");
    CHECK(hmp::run("nbd_server_add virtio0", exec) == "");
    CHECK(hmp::run("nbd_server_remove -f disk", exec) == "");
    CHECK(hmp::run("nbd_server_remove disk", exec) == "");
    CHECK(hmp::run("nbd_server_stop", exec) == "");
    REQUIRE(called.size() == 5);
    CHECK(called[0] == std::pair<std::string, json>{"nbd-server-add", {{"device", "virtio0"}, {"name", "disk"},
                                                                       {"writable", true}}});
    CHECK(called[1].second == json{{"device", "virtio0"}});
    CHECK(called[2].second == json{{"name", "disk"}, {"mode", "hard"}});
    CHECK(called[3].second == json{{"name", "disk"}});
    CHECK(called[4].first == "nbd-server-stop");
}

TEST_CASE("HMP block graph commands: snapshots, commit, block jobs")
{
    std::vector<std::pair<std::string, json>> called;
    json jobs = json::array();
    hmp::Executor exec = [&](const std::string& cmd, const json& args) -> qmp::Result<json> {
        called.emplace_back(cmd, args);
        if (cmd == "query-block-jobs")
            return jobs;
        return json::object();
    };
    CHECK(hmp::run("snapshot_blkdev -n d0 /x.qcow2 qcow2", exec) == "");
    CHECK(called.back() == std::pair<std::string, json>{"blockdev-snapshot-sync",
                                                         {{"device", "d0"}, {"snapshot-file", "/x.qcow2"},
                                                          {"format", "qcow2"}, {"mode", "existing"}}});
    CHECK(hmp::run("snapshot_blkdev d0", exec) == "");
    CHECK(called.back().second == json{{"device", "d0"}, {"mode", "absolute-paths"}});
    CHECK(hmp::run("snapshot_blkdev_internal d0 s1", exec) == "");
    CHECK(called.back() == std::pair<std::string, json>{"blockdev-snapshot-internal-sync",
                                                         {{"device", "d0"}, {"name", "s1"}}});
    CHECK(hmp::run("snapshot_delete_blkdev_internal d0 s1 3", exec) == "");
    CHECK(called.back().second == json{{"device", "d0"}, {"name", "s1"}, {"id", "3"}});
    CHECK(hmp::run("commit all", exec) == "");
    CHECK(called.back() == std::pair<std::string, json>{"__org.emud_commit", {{"device", "all"}}});
    CHECK(hmp::run("block_job_cancel -f j", exec) == "");
    CHECK(called.back().second == json{{"device", "j"}, {"force", true}});
    CHECK(hmp::run("block_job_set_speed j 1M", exec) == "");
    CHECK(called.back().second == json{{"device", "j"}, {"speed", 1 << 20}});
    CHECK(hmp::run("info block-jobs", exec) == "No active jobs\n");
    jobs.push_back({{"type", "commit"}, {"device", "j"}, {"offset", 5}, {"len", 10}, {"speed", 0}});
    CHECK(hmp::run("info block-jobs", exec) ==
          "Type commit, device j: Completed 5 of 10 bytes, speed limit 0 bytes/s\n");
}

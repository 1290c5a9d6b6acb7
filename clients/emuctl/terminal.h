// clients/emuctl/terminal.h — puts the user's terminal on a VM: its console
// stream, and the human monitor behind Ctrl-a c, like QEMU's -nographic.
#pragma once

#include <string>

namespace emu::emuctl {

struct AttachOptions {
    std::string name;         // the VM, for messages
    std::string console_path; // unix socket of the VM's console; empty: none
    std::string hmp_path;     // unix socket of the VM's human monitor
    std::string qmp_path;     // the VM's QMP socket: tells when the VM ends
    // run: Ctrl-a x ends the VM and emuctl exits with it (as QEMU);
    // console: Ctrl-a x only detaches.
    bool run_mode = true;
    bool start_in_monitor = false; // no console: the terminal is the monitor
    bool ctrl_c_ends_vm = false;   // the console chardev has signal=on
    bool start_vm = false;         // send cont once attached (emuctl run without -S)
};

// Runs until the VM ends (run mode) or the user detaches; returns the exit code.
int attach_terminal(const AttachOptions& opts);

} // namespace emu::emuctl

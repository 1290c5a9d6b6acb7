#include "devices/block_device.h"

namespace emu::devices {

namespace {

constexpr const char* k_names[] = {"report", "ignore", "stop", "enospc"};

} // namespace

const char* block_error_action_name(BlockErrorAction action) { return k_names[unsigned(action)]; }

bool parse_block_error_action(const std::string& name, BlockErrorAction& action)
{
    for (unsigned i = 0; i < 4; i++)
        if (name == k_names[i]) {
            action = BlockErrorAction(i);
            return true;
        }
    return false;
}

} // namespace emu::devices

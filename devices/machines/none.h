#pragma once

#include "devices/machine.h"

namespace emu::devices {

MachineClass none_machine_class();

} // namespace emu::devices

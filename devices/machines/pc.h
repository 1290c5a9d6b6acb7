// devices/machines/pc.h — machine 'pc': QEMU's i440FX + PIIX3 PC, booted
// directly from -kernel (there is no bundled BIOS yet).
#pragma once

#include "devices/machine.h"

namespace emu::devices {

MachineClass pc_machine_class();

} // namespace emu::devices

// emud-schema-doc: prints docs/qmp.md, generated from the QMP schema.
#include "protocol/qmp/schema.h"

#include <cstdio>

int main()
{
    std::string doc = emu::qmp::Schema::builtin().markdown();
    fwrite(doc.data(), 1, doc.size(), stdout);
    return 0;
}

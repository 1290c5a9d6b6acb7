// Differential test: thousands of random instruction forms, run on the host
// CPU and in the engine from the same state, must agree (tests/difftest).
#include "tests/difftest/difftest.h"

#include <doctest/doctest.h>
#include <map>

using namespace emu::difftest;

namespace {
void run_cases(Generator& gen, int count)
{
    int cases = 0, failures = 0, faults = 0;
    std::map<std::string, int> failing; // mnemonic -> count
    std::string first_reports;
    while (cases < count) {
        Case c;
        if (!gen.next(c))
            continue;
        cases++;
        Outcome native = run_native(c);
        Outcome engine = run_engine(c);
        faults += native.faulted;
        std::string diff = compare(c, native, engine);
        if (!diff.empty()) {
            failures++;
            failing[c.text.substr(0, c.text.find(' '))]++;
            if (failures <= 12)
                first_reports += diff;
        }
    }
    std::string summary;
    for (auto& [m, n] : failing)
        summary += m + "×" + std::to_string(n) + " ";
    INFO("failing mnemonics: ", summary, "\n", first_reports);
    CHECK(failures == 0);
    MESSAGE(cases, " cases, ", faults, " of them faulting natively");
}
} // namespace

TEST_CASE("the engine agrees with the host CPU on random 64-bit instruction forms")
{
    Generator gen(20261125);
    run_cases(gen, 4000);
}

TEST_CASE("... and on 32-bit forms in compatibility mode")
{
    if (!native_compat_mode_works()) {
        MESSAGE("skipped: this host kernel cannot run 32-bit code in compatibility mode (a native 'nop' at "
                "selector 0x23 faults), so there is no reference to compare with");
        return;
    }
    Generator gen(20261126, true);
    run_cases(gen, 1500);
}

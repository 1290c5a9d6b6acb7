// bench/x86_fuzz — the differential tester at scale: N random instruction
// forms (default one million) on the host CPU and in the engine.
//   x86_fuzz [COUNT] [SEED] [--compat]   (--compat: 32-bit code in compatibility mode)
#include "tests/difftest/difftest.h"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>

using namespace emu::difftest;

int main(int argc, char** argv)
{
    long count = argc > 1 ? atol(argv[1]) : 1000000;
    uint64_t seed = argc > 2 ? strtoull(argv[2], nullptr, 0) : uint64_t(time(nullptr));
    bool compat = argc > 3 && std::string(argv[3]) == "--compat";
    printf("x86_fuzz: %ld cases, seed %llu\n", count, (unsigned long long)seed);
    Generator gen(seed, compat);
    long done = 0, failures = 0, sse = 0, faults = 0;
    std::map<std::string, long> failing;
    auto start = std::chrono::steady_clock::now();
    while (done < count) {
        Case c;
        if (!gen.next(c))
            continue;
        done++;
        sse += c.sse;
        Outcome native = run_native(c);
        faults += native.faulted;
        std::string diff = compare(c, native, run_engine(c));
        if (!diff.empty()) {
            if (++failures <= 20)
                fputs(diff.c_str(), stdout);
            failing[c.text.substr(0, c.text.find(' '))]++;
        }
        if (done % 100000 == 0) {
            double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            printf("  %ld cases, %ld failures, %.0f cases/s\n", done, failures, done / s);
            fflush(stdout);
        }
    }
    printf("x86_fuzz: %ld cases (%ld SSE, %ld faulting natively), %ld failures\n", done, sse, faults, failures);
    for (auto& [m, n] : failing)
        printf("  %s: %ld\n", m.c_str(), n);
    return failures ? 1 : 0;
}

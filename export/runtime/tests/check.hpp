// A minimal test harness (no third-party framework): TEST registers a case, CHECK* record failures and go on,
// main runs every case and exits non-zero if any check failed.
#pragma once

#include <cstdio>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace strsr_test {

inline std::vector<std::pair<const char*, std::function<void()>>>& registry() {
    static std::vector<std::pair<const char*, std::function<void()>>> cases;
    return cases;
}
inline int& failures() {
    static int count = 0;
    return count;
}
struct Register {
    Register(const char* name, std::function<void()> body) { registry().emplace_back(name, std::move(body)); }
};
inline void fail(const char* file, int line, const std::string& what) {
    std::fprintf(stderr, "%s:%d: FAILED %s\n", file, line, what.c_str());
    ++failures();
}

}  // namespace strsr_test

#define TEST(name)                                                            \
    static void test_##name();                                                \
    static const strsr_test::Register register_##name(#name, test_##name);    \
    static void test_##name()

#define CHECK(cond) \
    ((cond) ? (void)0 : strsr_test::fail(__FILE__, __LINE__, "CHECK(" #cond ")"))

#define CHECK_EQ(a, b)                                                                                      \
    do {                                                                                                    \
        const auto& check_a_ = (a);                                                                         \
        const auto& check_b_ = (b);                                                                         \
        if (!(check_a_ == check_b_))                                                                        \
            strsr_test::fail(__FILE__, __LINE__, "CHECK_EQ(" #a ", " #b "): " + std::to_string(check_a_) + \
                                                     " != " + std::to_string(check_b_));                    \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                                               \
    do {                                                                                                    \
        const double check_a_ = double(a), check_b_ = double(b);                                            \
        if (!(check_a_ - check_b_ <= (tol) && check_b_ - check_a_ <= (tol)))                                \
            strsr_test::fail(__FILE__, __LINE__, "CHECK_NEAR(" #a ", " #b "): " + std::to_string(check_a_) + \
                                                     " vs " + std::to_string(check_b_));                    \
    } while (0)

// `expr` must throw strsr::Error with `status` and a message containing `needle`.
#define CHECK_ERROR(expr, status_, needle)                                                                  \
    do {                                                                                                    \
        try {                                                                                               \
            (void)(expr);                                                                                   \
            strsr_test::fail(__FILE__, __LINE__, "no error from " #expr);                                   \
        } catch (const strsr::Error& e) {                                                                   \
            if (e.status() != (status_) || std::string(e.what()).find(needle) == std::string::npos)         \
                strsr_test::fail(__FILE__, __LINE__, std::string("unexpected error from " #expr ": ") + e.what()); \
        }                                                                                                   \
    } while (0)

#define TEST_MAIN()                                                           \
    int main() {                                                              \
        for (auto& [name, body] : strsr_test::registry()) {                   \
            const int before = strsr_test::failures();                        \
            body();                                                           \
            std::printf("%s %s\n", strsr_test::failures() == before ? "ok  " : "FAIL", name); \
        }                                                                     \
        return strsr_test::failures() ? 1 : 0;                                \
    }

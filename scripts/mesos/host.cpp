// fundus-mesos-local: a Mesos 1.11 master and agent(s) in one process, from libmesos.
//
// The program Mesos itself ships for this (src/local/main.cpp, `mesos-local`) is not in the
// PyPI package; the library is, with its C++ entry points exported. This host does what
// that main does, calling them by their mangled names (no Mesos headers are available):
//
//   1. local::Flags, loaded from MESOS_* variables. The master and agent flags are read
//      from the same variables by local::launch, so every flag of both is set that way.
//   2. process::initialize (libprocess listens on LIBPROCESS_IP:LIBPROCESS_PORT).
//   3. logging::initialize (glog to stderr).
//   4. A VersionProcess, so /version answers.
//   5. local::launch, then wait for SIGTERM/SIGINT and _exit(0) at once: libmesos's static
//      destructors are not meant to run while its threads are alive.
//
// Usage: fundus-mesos-local        (everything from the environment)
//        fundus-mesos-local --check (only proves that the libraries load and link)
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <typeinfo>

namespace __cxxabiv1 {
class __class_type_info;
}

// The library's entry points and type descriptors, by their mangled names. References are
// passed as pointers; results returned through a hidden pointer take a buffer first.
namespace libmesos {

// stout's Option<T>: the state (SOME = 0, NONE = 1), then storage for a T.
struct OptionString {
    int state;
    std::string value;
};

// Type descriptors of the two bases we need pointers to. Declared as bytes: declared as
// std::type_info objects, the compiler would take them for exactly that type.
extern const char flags_base_typeinfo[] asm("_ZTIN5flags9FlagsBaseE");
extern const char process_base_typeinfo[] asm("_ZTIN7process11ProcessBaseE");

// mesos::internal::local::Flags::Flags() (complete-object constructor).
void local_flags_ctor(void *self) asm("_ZN5mesos8internal5local5FlagsC1Ev");
// Try<flags::Warnings> flags::FlagsBase::load(const std::string& prefix).
void flags_base_load(void *result, void *self, const std::string *prefix)
    asm("_ZN5flags9FlagsBase4loadERKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEE");
// bool process::initialize(const Option<string>& delegate, const Option<string>& readwrite realm,
//                          const Option<string>& readonly realm).
bool process_initialize(const OptionString *, const OptionString *, const OptionString *)
    asm("_ZN7process10initializeERK6OptionINSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEEES9_S9_");
// void mesos::internal::logging::initialize(const string& argv0, bool installFailureSignalHandler,
//                                          const Option<logging::Flags>& flags).
void logging_initialize(const std::string *argv0, bool handlers, const void *flags)
    asm("_ZN5mesos8internal7logging10initializeERKNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEEbRK6OptionINS1_5FlagsEE");
// mesos::internal::VersionProcess::VersionProcess() (complete-object constructor).
void version_process_ctor(void *self) asm("_ZN5mesos8internal14VersionProcessC1Ev");
// process::UPID process::spawn(process::ProcessBase* process, bool manage).
void process_spawn(void *result, void *process, bool manage) asm("_ZN7process5spawnEPNS_11ProcessBaseEb");
// PID<Master> mesos::internal::local::launch(const local::Flags&, mesos::allocator::Allocator*).
void local_launch(void *result, const void *flags, void *allocator)
    asm("_ZN5mesos8internal5local6launchERKNS1_5FlagsEPNS_9allocator9AllocatorE");

} // namespace libmesos

using libmesos::OptionString;

namespace {

// stout's Try<flags::Warnings>: Option<Warnings> (a vector, 32 bytes with its state), then
// Option<Error>, whose Error holds one std::string.
struct TryWarnings {
    int data_state;
    alignas(8) unsigned char warnings[24];
    int error_state;
    std::string error_message;
};

// Objects of library classes whose size this file cannot know: generous, zeroed storage.
alignas(64) unsigned char local_flags[1 << 20];
alignas(64) unsigned char try_result[4096];
alignas(64) unsigned char none_logging_flags[4096];
alignas(64) unsigned char upid_result[4096];
alignas(64) unsigned char master_pid[4096];

// Both classes reach their base (FlagsBase, ProcessBase) through a virtual base, whose offset
// only the object's vtable knows: let the C++ runtime do the upcast, as a catch clause would,
// starting from the object's own type (the vtable's type_info slot).
void *upcast(void *object, const char *base_typeinfo)
{
    const std::type_info *type = (*static_cast<const std::type_info ***>(object))[-1];
    const auto *base = reinterpret_cast<const __cxxabiv1::__class_type_info *>(base_typeinfo);
    void *p = object;
    if (!type->__do_upcast(base, &p)) {
        std::fprintf(stderr, "fundus-mesos-local: no %s in %s\n",
                     reinterpret_cast<const std::type_info *>(base_typeinfo)->name(), type->name());
        std::exit(1);
    }
    return p;
}

OptionString some(const char *value) { return OptionString{0, value}; }

void on_stop(int) { _exit(0); }

} // namespace

int main(int argc, char **argv)
{
    using namespace libmesos;

    if (argc > 1) {
        if (std::strcmp(argv[1], "--check") == 0) return 0;
        std::fprintf(stderr, "usage: %s [--check]\n(master and agent flags come from MESOS_* variables)\n", argv[0]);
        return 2;
    }

    local_flags_ctor(local_flags);
    const std::string prefix = "MESOS_";
    flags_base_load(try_result, upcast(local_flags, flags_base_typeinfo), &prefix);
    const TryWarnings *loaded = reinterpret_cast<const TryWarnings *>(try_result);
    if (loaded->error_state == 0) {
        std::fprintf(stderr, "fundus-mesos-local: bad MESOS_* flags: %s\n", loaded->error_message.c_str());
        return 1;
    }

    const OptionString delegate = some("master");
    const OptionString readwrite = some("mesos-master-readwrite");
    const OptionString readonly = some("mesos-master-readonly");
    process_initialize(&delegate, &readwrite, &readonly);

    *reinterpret_cast<int *>(none_logging_flags) = 1; // Option<logging::Flags>::none()
    const std::string argv0 = argv[0];
    logging_initialize(&argv0, true, none_logging_flags);

    void *version = ::operator new(1 << 16);
    std::memset(version, 0, 1 << 16);
    version_process_ctor(version);
    process_spawn(upid_result, upcast(version, process_base_typeinfo), true);

    local_launch(master_pid, local_flags, nullptr);

    // After logging::initialize, which installs its own SIGTERM handler.
    struct sigaction stop;
    std::memset(&stop, 0, sizeof stop);
    stop.sa_handler = on_stop;
    sigemptyset(&stop.sa_mask);
    sigaction(SIGTERM, &stop, nullptr);
    sigaction(SIGINT, &stop, nullptr);
    for (;;) pause();
}

// Must NOT compile: ProcessLock::lock() is a single try, so a std::lock_guard over it would
// not wait. ProcessLock has no unlock(), which stops this here.
#include <process_lock.hpp>

#include <mutex>

void misuse(process_lock::ProcessLock& lock) { std::lock_guard<process_lock::ProcessLock> guard(lock); }

// Must compile: the control for lock_guard_on_process_lock.cpp, the right way to do it.
#include <process_lock.hpp>

#include <mutex>

void proper_use(process_lock::ProcessLock& lock) {
  process_lock::Mutex mutex(lock);
  std::lock_guard<process_lock::Mutex> guard(mutex);
}

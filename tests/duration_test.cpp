// Durations and time points of any type and value: every public wait and time limit either
// saturates ("forever") or is rejected with invalid_argument, and none overflows (the suite
// runs under UBSan too, see sanitizers.sh). First the one conversion they all go through, as
// tables; then each public form against a real server.
#include <gtest/gtest.h>

#include <cmath>
#include <future>
#include <limits>
#include <thread>

#include "support.hpp"

namespace {

using process_lock::errc;
using process_lock::Error;
using process_lock::Guard;
using process_lock::KeepOptions;
using process_lock::Mutex;
using process_lock::Options;
using process_lock::ProcessLock;
using process_lock::detail::saturating_deadline;
using process_lock::detail::to_steady;
using namespace std::chrono_literals;
using std::chrono::duration;
using std::chrono::hours;
using std::chrono::microseconds;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::nanoseconds;
using std::chrono::seconds;
using std::chrono::system_clock;
using std::chrono::time_point;
using steady = std::chrono::steady_clock;
using years = duration<long long, std::ratio<31556952>>;

const steady::time_point now{hours(1)};
const steady::time_point forever = steady::time_point::max();
const double nan = std::numeric_limits<double>::quiet_NaN();
const double inf = std::numeric_limits<double>::infinity();

// A clock of the user's own, in tenths of a second, that reads the system clock.
struct DeciClock {
  using rep = long long;
  using period = std::deci;
  using duration = std::chrono::duration<rep, period>;
  using time_point = std::chrono::time_point<DeciClock>;
  [[maybe_unused]] static constexpr bool is_steady = false;  // required of a clock, unused here
  static time_point now() { return time_point(std::chrono::floor<duration>(system_clock::now().time_since_epoch())); }
};

// ---- the conversion, as tables (no server) --------------------------------------------------

TEST(SaturatingDeadlineTest, ZeroNegativeAndMinimumOfAnyTypeAreNow) {
  EXPECT_EQ(saturating_deadline(now, nanoseconds::zero()), now);
  EXPECT_EQ(saturating_deadline(now, nanoseconds(-1)), now);
  EXPECT_EQ(saturating_deadline(now, nanoseconds::min()), now);
  EXPECT_EQ(saturating_deadline(now, microseconds::min()), now);
  EXPECT_EQ(saturating_deadline(now, milliseconds(-5)), now);
  EXPECT_EQ(saturating_deadline(now, milliseconds::min()), now);
  EXPECT_EQ(saturating_deadline(now, seconds::min()), now);
  EXPECT_EQ(saturating_deadline(now, minutes::min()), now);
  EXPECT_EQ(saturating_deadline(now, hours::min()), now);
  EXPECT_EQ(saturating_deadline(now, years::min()), now);
  EXPECT_EQ(saturating_deadline(now, duration<int>::min()), now);
  EXPECT_EQ(saturating_deadline(now, duration<unsigned, std::milli>::min()), now);  // zero
  EXPECT_EQ(saturating_deadline(now, duration<double>(-0.5)), now);
  EXPECT_EQ(saturating_deadline(now, duration<double>(std::numeric_limits<double>::lowest())), now);
  EXPECT_EQ(saturating_deadline(now, duration<double>(-inf)), now);
  EXPECT_EQ(saturating_deadline(now, duration<float, std::milli>(std::numeric_limits<float>::lowest())), now);
}

TEST(SaturatingDeadlineTest, MaximumOfAnyWideTypeIsForever) {
  EXPECT_EQ(saturating_deadline(now, nanoseconds::max()), forever);
  EXPECT_EQ(saturating_deadline(now, microseconds::max()), forever);
  EXPECT_EQ(saturating_deadline(now, milliseconds::max()), forever);
  EXPECT_EQ(saturating_deadline(now, seconds::max()), forever);
  EXPECT_EQ(saturating_deadline(now, minutes::max()), forever);
  EXPECT_EQ(saturating_deadline(now, hours::max()), forever);
  EXPECT_EQ(saturating_deadline(now, years::max()), forever);
  EXPECT_EQ(saturating_deadline(now, duration<double>::max()), forever);
  EXPECT_EQ(saturating_deadline(now, duration<double>(inf)), forever);
  EXPECT_EQ(saturating_deadline(now, duration<float, std::milli>::max()), forever);
  EXPECT_EQ(saturating_deadline(now, duration<long double, std::ratio<3600>>::max()), forever);
  EXPECT_EQ(saturating_deadline(now, hours(24 * 365 * 300)), forever);  // 300 years: past the clock's end
}

TEST(SaturatingDeadlineTest, NarrowTypesAndOrdinaryValuesAreExact) {
  EXPECT_EQ(saturating_deadline(now, duration<int>::max()), now + seconds(std::numeric_limits<int>::max()));
  EXPECT_EQ(saturating_deadline(now, duration<unsigned, std::milli>::max()),
            now + milliseconds(std::numeric_limits<unsigned>::max()));
  EXPECT_EQ(saturating_deadline(now, 1500us), now + 1500us);
  EXPECT_EQ(saturating_deadline(now, 2h), now + 2h);
  EXPECT_EQ(saturating_deadline(now, years(100)), now + years(100));
  EXPECT_EQ(saturating_deadline(now, duration<double, std::milli>(1.5)), now + 1500us);
  EXPECT_EQ(saturating_deadline(now, duration<double, std::nano>(0.2)), now + 1ns);  // rounded up: never early
}

TEST(SaturatingDeadlineTest, TheEndOfTheClocksRange) {
  const nanoseconds room = forever - now;
  EXPECT_EQ(saturating_deadline(now, room - 2s), now + (room - 2s));
  EXPECT_EQ(saturating_deadline(now, room - 1s), forever);  // within a second of the end
  EXPECT_EQ(saturating_deadline(now, room), forever);
  EXPECT_EQ(saturating_deadline(forever, 1ns), forever);
  EXPECT_EQ(saturating_deadline(forever - 1s, 1ns), forever);
  EXPECT_EQ(saturating_deadline(forever, -1ns), forever);  // no later than now, which is the end
  EXPECT_EQ(saturating_deadline(steady::time_point{}, 1s), steady::time_point{} + 1s);
}

TEST(SaturatingDeadlineTest, NanIsInvalid) {
  EXPECT_EQ(test::failure_of([] { (void)saturating_deadline(now, duration<double>(nan)); }).code(),
            errc::invalid_argument);
}

TEST(ToSteadyTest, TimePointsOfAnyClockAndType) {
  const system_clock::time_point wall{seconds(1'700'000'000)};
  EXPECT_EQ(to_steady(wall + 5s, wall, now), now + 5s);
  EXPECT_EQ(to_steady(wall, wall, now), now);
  EXPECT_EQ(to_steady(wall - 5s, wall, now), now);
  EXPECT_EQ(to_steady(system_clock::time_point::max(), wall, now), forever);
  EXPECT_EQ(to_steady(system_clock::time_point::min(), wall, now), now);
  EXPECT_EQ(to_steady(time_point<system_clock, hours>::max(), wall, now), forever);
  EXPECT_EQ(to_steady(time_point<system_clock, hours>::min(), wall, now), now);
  EXPECT_EQ(to_steady(time_point<system_clock, seconds>::max(), wall, now), forever);
  EXPECT_EQ(to_steady(time_point<system_clock, seconds>(seconds(1'700'000'003)), wall, now), now + 3s);
  EXPECT_EQ(to_steady(time_point<system_clock, duration<double>>(duration<double>(inf)), wall, now), forever);
  EXPECT_EQ(to_steady(time_point<system_clock, duration<double>>(duration<double>(-inf)), wall, now), now);
  EXPECT_EQ(test::failure_of([&] {
              (void)to_steady(time_point<system_clock, duration<double>>(duration<double>(nan)), wall, now);
            }).code(),
            errc::invalid_argument);
  const DeciClock::time_point deci{DeciClock::duration(17'000'000'000)};
  EXPECT_EQ(to_steady(deci + DeciClock::duration(15), deci, now), now + 1500ms);
  EXPECT_EQ(to_steady(DeciClock::time_point::max(), deci, now), forever);
  EXPECT_EQ(to_steady(DeciClock::time_point::min(), deci, now), now);
  // The monotonic clock itself, in its own type and in others.
  EXPECT_EQ(to_steady(now + 7ms, now, now), now + 7ms);
  EXPECT_EQ(to_steady(forever, now, now), forever);
  EXPECT_EQ(to_steady(steady::time_point::min(), now, now), now);
  EXPECT_EQ(to_steady(now - 1ns, now, now), now);
  EXPECT_EQ(to_steady(time_point<steady, hours>::max(), now, now), forever);
  EXPECT_EQ(to_steady(time_point<steady, hours>::min(), now, now), now);
  EXPECT_EQ(to_steady(time_point<steady, seconds>(seconds(3605)), now, now), now + 5s);
  EXPECT_EQ(to_steady(time_point<steady, duration<double>>::max(), now, now), forever);
}

// The lock's own timeout is checked, not saturated: it is how long others may be locked out.
TEST(HugeTimeoutTest, TheLocksTimeoutRejectsTheExtremesOfAnyType) {
  Options unreachable;
  unreachable.url = test::closed_port_url();
  auto invalid = [&](auto timeout) {
    return test::failure_of([&] { ProcessLock("a", timeout, unreachable); }).code() == errc::invalid_argument;
  };
  EXPECT_TRUE(invalid(nanoseconds::min()));
  EXPECT_TRUE(invalid(nanoseconds::max()));
  EXPECT_TRUE(invalid(milliseconds::min()));
  EXPECT_TRUE(invalid(milliseconds::max()));
  EXPECT_TRUE(invalid(seconds::max()));
  EXPECT_TRUE(invalid(hours::min()));
  EXPECT_TRUE(invalid(hours::max()));
  EXPECT_TRUE(invalid(years::max()));
  EXPECT_TRUE(invalid(duration<double>(nan)));
  EXPECT_TRUE(invalid(duration<double>::max()));
  EXPECT_TRUE(invalid(std::numeric_limits<double>::lowest()));
  EXPECT_TRUE(invalid(std::numeric_limits<long long>::min()));
  EXPECT_TRUE(invalid(std::numeric_limits<double>::denorm_min()));
}

TEST(HugeTimeoutTest, OptionsTimeoutsRejectTheExtremes) {
  for (const milliseconds bad : {milliseconds::min(), -1ms, 0ms, milliseconds::max(), milliseconds(hours(2))}) {
    for (const char* field : {"connect_timeout", "command_timeout", "node_timeout", "wait_timeout"}) {
      // One master and several; with and without a replication check.
      for (const char* url : {"redis://127.0.0.1:1", "redis://127.0.0.1:1,redis://127.0.0.1:2,redis://127.0.0.1:3"}) {
        for (const int replicas : {0, 1}) {
          Options o;
          o.url = url;
          o.wait_replicas = replicas;
          const std::string name = field;
          (name == "connect_timeout"   ? o.connect_timeout
           : name == "command_timeout" ? o.command_timeout
           : name == "node_timeout"    ? o.node_timeout
                                       : o.wait_timeout) = bad;
          const Error e = test::failure_of([&] { ProcessLock("job", 10, o); });
          EXPECT_EQ(e.code(), errc::invalid_argument) << field << " = " << bad.count() << " ms, " << url;
          EXPECT_TRUE(test::contains(e.what(), field)) << e.what();
        }
      }
    }
  }
}

// ---- each public form against a server ------------------------------------------------------

// A call that answers and how long it took. A wait still running after 5 s is cancelled, so
// that a wrong answer fails the test instead of hanging it.
struct Outcome {
  bool answer;
  milliseconds took;
};
template <class Call>
Outcome timed(ProcessLock& lock, Call call) {
  const auto start = steady::now();
  std::future<bool> answer = std::async(std::launch::async, call);
  if (answer.wait_for(5s) != std::future_status::ready) {
    ADD_FAILURE() << "still waiting after 5 s";
    lock.cancel();
  }
  const bool result = answer.get();
  return {result, std::chrono::duration_cast<milliseconds>(steady::now() - start)};
}

// Generous for a loaded machine or sanitizers; a free lock takes one round trip on loopback.
constexpr milliseconds prompt = 1000ms;

template <class T>
struct is_time_point : std::false_type {};
template <class Clock, class Duration>
struct is_time_point<time_point<Clock, Duration>> : std::true_type {};

// One public way to wait for the lock, with one limit.
struct Form {
  std::string name;
  std::function<bool()> call;
  bool via_mutex;  // the lock is then released with Mutex::unlock()
};

class HugeDurationTest : public test::SharedServerTest<HugeDurationTest> {
 protected:
  // try_lock_for(limit) or try_lock_until(limit), of the ProcessLock or of its Mutex.
  template <class Limit>
  Form form(std::string name, Limit limit, bool via_mutex = false) {
    return {std::move(name),
            [this, limit, via_mutex] {
              if constexpr (is_time_point<Limit>::value)
                return via_mutex ? mutex_.try_lock_until(limit) : lock_.try_lock_until(limit);
              else
                return via_mutex ? mutex_.try_lock_for(limit) : lock_.try_lock_for(limit);
            },
            via_mutex};
  }

  // Every form of "as long as it takes": the ::max() of each duration and time point type.
  std::vector<Form> longest_waits() {
    std::vector<Form> forms = {
        form("try_lock_for(nanoseconds::max())", nanoseconds::max()),
        form("try_lock_for(microseconds::max())", microseconds::max()),
        form("try_lock_for(milliseconds::max())", milliseconds::max()),
        form("try_lock_for(seconds::max())", seconds::max()),
        form("try_lock_for(minutes::max())", minutes::max()),
        form("try_lock_for(hours::max())", hours::max()),
        form("try_lock_for(years::max())", years::max()),
        form("try_lock_for(duration<double>::max())", duration<double>::max()),
        form("try_lock_for(duration<double>(inf))", duration<double>(inf)),
        form("try_lock_until(steady_clock::time_point::max())", steady::time_point::max()),
        form("try_lock_until(time_point<steady_clock, hours>::max())", time_point<steady, hours>::max()),
        form("try_lock_until(time_point<steady_clock, seconds>::max())", time_point<steady, seconds>::max()),
        form("try_lock_until(system_clock::time_point::max())", system_clock::time_point::max()),
        form("try_lock_until(time_point<system_clock, hours>::max())", time_point<system_clock, hours>::max()),
        form("try_lock_until(time_point<system_clock, seconds>::max())", time_point<system_clock, seconds>::max()),
        form("try_lock_until(DeciClock::time_point::max())", DeciClock::time_point::max()),
        form("Mutex::try_lock_for(nanoseconds::max())", nanoseconds::max(), true),
        form("Mutex::try_lock_for(milliseconds::max())", milliseconds::max(), true),
        form("Mutex::try_lock_for(seconds::max())", seconds::max(), true),
        form("Mutex::try_lock_for(hours::max())", hours::max(), true),
        form("Mutex::try_lock_for(duration<double>(inf))", duration<double>(inf), true),
        form("Mutex::try_lock_until(steady_clock::time_point::max())", steady::time_point::max(), true),
        form("Mutex::try_lock_until(time_point<steady_clock, hours>::max())", time_point<steady, hours>::max(), true),
        form("Mutex::try_lock_until(system_clock::time_point::max())", system_clock::time_point::max(), true),
        form("Mutex::try_lock_until(time_point<system_clock, hours>::max())", time_point<system_clock, hours>::max(),
             true),
        form("Mutex::try_lock_until(DeciClock::time_point::max())", DeciClock::time_point::max(), true),
        {"try_lock_for(seconds::max(), callback)", [this] { return with_callback(seconds::max()); }, false},
        {"try_lock_for(hours::max(), callback)", [this] { return with_callback(hours::max()); }, false},
    };
#if defined(__cpp_lib_jthread)
    forms.push_back({"try_lock_for(seconds::max(), stop_token)",
                     [this] { return lock_.try_lock_for(seconds::max(), stop_.get_token()); }, false});
    forms.push_back({"try_lock_for(hours::max(), stop_token)",
                     [this] { return lock_.try_lock_for(hours::max(), stop_.get_token()); }, false});
#endif
    return forms;
  }

  // Every form of "no wait": zero, negative and ::min() limits, and time points past.
  std::vector<Form> shortest_waits() {
    std::vector<Form> forms = {
        form("try_lock_for(0ms)", 0ms),
        form("try_lock_for(-1ns)", -1ns),
        form("try_lock_for(nanoseconds::min())", nanoseconds::min()),
        form("try_lock_for(milliseconds::min())", milliseconds::min()),
        form("try_lock_for(seconds::min())", seconds::min()),
        form("try_lock_for(hours::min())", hours::min()),
        form("try_lock_for(duration<double>(lowest))", duration<double>(std::numeric_limits<double>::lowest())),
        form("try_lock_for(duration<double>(-inf))", duration<double>(-inf)),
        form("try_lock_until(steady_clock::time_point::min())", steady::time_point::min()),
        form("try_lock_until(time_point<steady_clock, hours>::min())", time_point<steady, hours>::min()),
        form("try_lock_until(system_clock::time_point::min())", system_clock::time_point::min()),
        form("try_lock_until(time_point<system_clock, hours>::min())", time_point<system_clock, hours>::min()),
        form("try_lock_until(DeciClock::time_point::min())", DeciClock::time_point::min()),
        {"try_lock_until(a second ago)", [this] { return lock_.try_lock_until(system_clock::now() - 1s); }, false},
        form("Mutex::try_lock_for(0ms)", 0ms, true),
        form("Mutex::try_lock_for(-1ms)", -1ms, true),
        form("Mutex::try_lock_for(nanoseconds::min())", nanoseconds::min(), true),
        form("Mutex::try_lock_for(seconds::min())", seconds::min(), true),
        form("Mutex::try_lock_for(hours::min())", hours::min(), true),
        form("Mutex::try_lock_until(steady_clock::time_point::min())", steady::time_point::min(), true),
        form("Mutex::try_lock_until(time_point<steady_clock, hours>::min())", time_point<steady, hours>::min(), true),
        form("Mutex::try_lock_until(system_clock::time_point::min())", system_clock::time_point::min(), true),
        form("Mutex::try_lock_until(time_point<system_clock, hours>::min())", time_point<system_clock, hours>::min(),
             true),
        {"try_lock_for(hours::min(), callback)", [this] { return with_callback(hours::min()); }, false},
    };
#if defined(__cpp_lib_jthread)
    forms.push_back({"try_lock_for(seconds::min(), stop_token)",
                     [this] { return lock_.try_lock_for(seconds::min(), stop_.get_token()); }, false});
#endif
    return forms;
  }

  template <class Limit>
  bool with_callback(Limit limit) {
    bool acquired = false;
    lock_.try_lock_for(limit, [&](const Error& e, bool got) { acquired = !e && got; });
    return acquired;
  }

  // The lock is ours through `form`: Redis says so; then it is released for the next form.
  void expect_ours_and_release(const Form& form) {
    EXPECT_EQ(raw_->string({"GET", "job"}), lock_.token()) << form.name;
    if (form.via_mutex)
      mutex_.unlock();
    else
      EXPECT_TRUE(lock_.clear().value_or(false)) << form.name;
  }

  ProcessLock lock_{"job", 10, options()};
  ProcessLock rival_{"job", 10, options()};
  Mutex mutex_{lock_};
#if defined(__cpp_lib_jthread)
  std::stop_source stop_;
#endif
};

TEST_F(HugeDurationTest, TheLongestWaitOfEveryFormTakesAFreeLockAtOnce) {
  for (const Form& form : longest_waits()) {
    const Outcome o = timed(lock_, form.call);
    EXPECT_TRUE(o.answer) << form.name;
    EXPECT_LT(o.took, prompt) << form.name;  // the lock was free: no waiting
    if (o.answer) expect_ours_and_release(form);
  }
}

// The defect itself: a limit that overflowed into the past gave up after the first attempt.
TEST_F(HugeDurationTest, TheLongestWaitOfEveryFormWaitsForTheHolderToRelease) {
  for (const Form& form : longest_waits()) {
    ASSERT_TRUE(rival_.lock());
    std::thread releaser([&] {
      std::this_thread::sleep_for(100ms);
      EXPECT_TRUE(rival_.clear().value_or(false));
    });
    const Outcome o = timed(lock_, form.call);
    releaser.join();
    EXPECT_TRUE(o.answer) << form.name;
    EXPECT_GE(o.took, 90ms) << form.name;  // it waited for the release
    EXPECT_LT(o.took, 100ms + prompt) << form.name;
    if (o.answer) expect_ours_and_release(form);
  }
}

// A wait of zero or less is one attempt: it takes a free lock, and answers false at once for a
// held one.
TEST_F(HugeDurationTest, TheShortestWaitsOfEveryFormAreOneAttempt) {
  for (const Form& form : shortest_waits()) {
    Outcome o = timed(lock_, form.call);
    EXPECT_TRUE(o.answer) << form.name << " (free)";
    EXPECT_LT(o.took, prompt) << form.name;
    if (o.answer) expect_ours_and_release(form);
    ASSERT_TRUE(rival_.lock());
    o = timed(lock_, form.call);
    EXPECT_FALSE(o.answer) << form.name << " (held)";
    EXPECT_LT(o.took, prompt) << form.name;
    ASSERT_TRUE(rival_.clear().value_or(false));
  }
}

TEST_F(HugeDurationTest, OrdinaryWaitsStillEndOnTime) {
  const Form forms[] = {
      form("try_lock_for(300ms)", 300ms),
      {"try_lock_until(steady now + 300ms)", [this] { return lock_.try_lock_until(steady::now() + 300ms); }, false},
      {"try_lock_until(system now + 300ms)", [this] { return lock_.try_lock_until(system_clock::now() + 300ms); },
       false},
      {"Mutex::try_lock_until(system now + 300ms)",
       [this] { return mutex_.try_lock_until(system_clock::now() + 300ms); }, true},
      form("Mutex::try_lock_for(300ms)", 300ms, true),
  };
  for (const Form& form : forms) {
    ASSERT_TRUE(rival_.lock());
    const Outcome o = timed(lock_, form.call);
    EXPECT_FALSE(o.answer) << form.name;
    EXPECT_GE(o.took, 290ms) << form.name;
    EXPECT_LT(o.took, 300ms + prompt) << form.name;
    ASSERT_TRUE(rival_.clear().value_or(false));
  }
}

TEST_F(HugeDurationTest, NanIsAnInvalidArgument) {
  EXPECT_EQ(test::failure_of([&] { (void)lock_.try_lock_for(duration<double>(nan)); }).code(), errc::invalid_argument);
  Error received;
  lock_.try_lock_for(duration<double>(nan), [&](const Error& e, bool) { received = e; });
  EXPECT_EQ(received.code(), errc::invalid_argument);
  EXPECT_EQ(test::failure_of([&] { (void)mutex_.try_lock_for(duration<double>(nan)); }).code(), errc::invalid_argument);
  EXPECT_TRUE(mutex_.try_lock());  // the failed call left the in-process part free
  mutex_.unlock();
}

TEST_F(HugeDurationTest, GuardWaitsOfAnyLength) {
  for (const milliseconds wait : {milliseconds::max(), milliseconds::min(), -1ms, 0ms}) {
    const auto start = steady::now();
    {
      const Guard guard(lock_, wait);
      EXPECT_TRUE(guard.owns_lock()) << wait.count();
      EXPECT_LT(steady::now() - start, prompt) << wait.count();
    }
    EXPECT_EQ(raw_->integer({"EXISTS", "job"}), 0);
  }
  ASSERT_TRUE(rival_.lock());
  for (const milliseconds wait : {milliseconds::min(), -1ms, 0ms}) {
    const auto start = steady::now();
    const Guard guard(lock_, wait);
    EXPECT_FALSE(guard.owns_lock()) << wait.count();
    EXPECT_LT(steady::now() - start, prompt) << wait.count();
  }
}

TEST_F(HugeDurationTest, KeepRejectsIntervalsAndMarginsOutOfRange) {
  ASSERT_TRUE(lock_.lock());
  auto rejected = [&](KeepOptions o) {
    const Error e = test::failure_of([&] { lock_.keep(std::move(o)); });
    return e.code() == errc::invalid_argument && !lock_.keeping();
  };
  for (const milliseconds bad : {milliseconds::max(), milliseconds::min(), -1ms, 0ms, milliseconds(10s)}) {
    KeepOptions o;
    o.interval = bad;
    EXPECT_TRUE(rejected(o)) << "interval " << bad.count();
  }
  for (const milliseconds bad : {milliseconds::max(), milliseconds::min(), -1ms, milliseconds(10s)}) {
    KeepOptions o;
    o.margin = bad;
    EXPECT_TRUE(rejected(o)) << "margin " << bad.count();
  }
  for (const milliseconds bad : {milliseconds::min(), -1ms}) {
    KeepOptions o;
    o.max_hold = bad;
    EXPECT_TRUE(rejected(o)) << "max_hold " << bad.count();
  }
  // A Guard that takes the lock but cannot keep it releases it.
  ASSERT_TRUE(lock_.clear().value_or(false));
  KeepOptions o;
  o.interval = milliseconds::max();
  EXPECT_EQ(test::failure_of([&] { const Guard guard(lock_, milliseconds::max(), o); }).code(), errc::invalid_argument);
  EXPECT_EQ(raw_->integer({"EXISTS", "job"}), 0);
}

// max_hold of any length is no limit: the keeper renews at its interval, as without one.
TEST_F(HugeDurationTest, KeepWithTheLongestMaxHoldRenewsAtItsInterval) {
  ProcessLock lock("job", 600ms, options());
  ASSERT_TRUE(lock.lock());
  test::LostProbe probe;
  std::atomic<int> renewals{0};
  KeepOptions o;
  o.interval = 100ms;
  o.max_hold = milliseconds::max();
  o.on_renewed = [&] { ++renewals; };
  lock.keep(probe.options(o));
  std::this_thread::sleep_for(1000ms);
  EXPECT_TRUE(lock.keeping());
  EXPECT_EQ(probe.count(), 0u);
  EXPECT_GE(renewals.load(), 4);   // every 100 ms
  EXPECT_LE(renewals.load(), 15);  // not in a tight loop
  EXPECT_GT(lock.valid_for(), 0ms);
  lock.stop_keeping();
}

}  // namespace

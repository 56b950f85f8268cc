/* Portable primitives for threadloom's native core: C11 atomics, a mutex and
 * a condition variable (pthreads, or SRW locks on Windows), a monotonic clock
 * and a CPU pause for bounded spinning. */
#ifndef TL_ATOMIC_H
#define TL_ATOMIC_H

#include <stdint.h>
#include <stddef.h>
#include <stdatomic.h>

#ifdef _WIN32
#  define WIN32_LEAN_AND_MEAN
#  include <windows.h>
typedef SRWLOCK tl_mutex;
typedef CONDITION_VARIABLE tl_cond;
static inline void tl_mutex_init(tl_mutex *m) { InitializeSRWLock(m); }
static inline void tl_mutex_destroy(tl_mutex *m) { (void)m; }
static inline void tl_mutex_lock(tl_mutex *m) { AcquireSRWLockExclusive(m); }
static inline void tl_mutex_unlock(tl_mutex *m) { ReleaseSRWLockExclusive(m); }
static inline void tl_cond_init(tl_cond *c) { InitializeConditionVariable(c); }
static inline void tl_cond_destroy(tl_cond *c) { (void)c; }
static inline void tl_cond_signal(tl_cond *c) { WakeConditionVariable(c); }
static inline void tl_cond_broadcast(tl_cond *c) { WakeAllConditionVariable(c); }
static inline void tl_cond_wait(tl_cond *c, tl_mutex *m) { SleepConditionVariableSRW(c, m, INFINITE, 0); }
/* Returns 1 if woken, 0 on timeout (the caller re-checks its predicate anyway). */
static inline int tl_cond_timedwait_ns(tl_cond *c, tl_mutex *m, uint64_t rel_ns) {
    DWORD ms = (DWORD)(rel_ns / 1000000u);
    return SleepConditionVariableSRW(c, m, ms ? ms : 1, 0) ? 1 : 0;
}
static inline uint64_t tl_now_ns(void) {
    static LARGE_INTEGER freq;
    LARGE_INTEGER now;
    if (!freq.QuadPart) QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&now);
    return (uint64_t)((double)now.QuadPart * 1e9 / (double)freq.QuadPart);
}
static inline void tl_cpu_relax(void) { YieldProcessor(); }
static inline void tl_yield(void) { SwitchToThread(); }
#else
#  include <pthread.h>
#  include <sched.h>
#  include <time.h>
#  include <errno.h>
typedef pthread_mutex_t tl_mutex;
typedef pthread_cond_t tl_cond;
static inline void tl_mutex_init(tl_mutex *m) { pthread_mutex_init(m, NULL); }
static inline void tl_mutex_destroy(tl_mutex *m) { pthread_mutex_destroy(m); }
static inline void tl_mutex_lock(tl_mutex *m) { pthread_mutex_lock(m); }
static inline void tl_mutex_unlock(tl_mutex *m) { pthread_mutex_unlock(m); }
static inline void tl_cond_init(tl_cond *c) {
#  if defined(__APPLE__)
    pthread_cond_init(c, NULL);
#  else
    /* Timed waits measure the monotonic clock, immune to wall-clock jumps. */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(c, &attr);
    pthread_condattr_destroy(&attr);
#  endif
}
static inline void tl_cond_destroy(tl_cond *c) { pthread_cond_destroy(c); }
static inline void tl_cond_signal(tl_cond *c) { pthread_cond_signal(c); }
static inline void tl_cond_broadcast(tl_cond *c) { pthread_cond_broadcast(c); }
static inline void tl_cond_wait(tl_cond *c, tl_mutex *m) { pthread_cond_wait(c, m); }
static inline uint64_t tl_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
static inline int tl_cond_timedwait_ns(tl_cond *c, tl_mutex *m, uint64_t rel_ns) {
    struct timespec ts;
#  if defined(__APPLE__)
    ts.tv_sec = (time_t)(rel_ns / 1000000000u);
    ts.tv_nsec = (long)(rel_ns % 1000000000u);
    return pthread_cond_timedwait_relative_np(c, m, &ts) == ETIMEDOUT ? 0 : 1;
#  else
    uint64_t deadline = tl_now_ns() + rel_ns;
    ts.tv_sec = (time_t)(deadline / 1000000000u);
    ts.tv_nsec = (long)(deadline % 1000000000u);
    return pthread_cond_timedwait(c, m, &ts) == ETIMEDOUT ? 0 : 1;
#  endif
}
static inline void tl_cpu_relax(void) {
#  if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#  elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#  endif
}
static inline void tl_yield(void) { sched_yield(); }
#endif

/* Bumped on every future completion, so that a thread waiting for a result
 * can spin without the GIL and look at the future again only when some
 * future somewhere completed. */
static _Atomic uint64_t tl_completions;
static inline void tl_completion_bump(void) { atomic_fetch_add(&tl_completions, 1); }

/* A worker defers its bump until it has released the GIL (in its next wait
 * for work), so that the woken waiter finds the GIL free instead of sleeping
 * on it.  Other threads bump at once. */
static _Thread_local int tl_in_worker;
static _Thread_local int tl_bump_pending;
static inline void tl_worker_enter(void) { tl_in_worker = 1; }
static inline void tl_worker_leave(void) {
    tl_in_worker = 0;
    if (tl_bump_pending) { tl_bump_pending = 0; tl_completion_bump(); }
}
static inline void tl_completion_signal(void) {
    if (tl_in_worker) tl_bump_pending = 1; else tl_completion_bump();
}
static inline void tl_flush_completion(void) {
    if (tl_bump_pending) { tl_bump_pending = 0; tl_completion_bump(); }
}

/* Threads spinning in result() without the GIL: a worker that has just taken
 * a task without the GIL waits briefly for one, because then the GIL is free
 * and taking it costs no sleep. */
static _Atomic int64_t tl_result_spinners;
static inline void tl_result_spin_enter(void) { atomic_fetch_add(&tl_result_spinners, 1); }
static inline void tl_result_spin_leave(void) { atomic_fetch_sub(&tl_result_spinners, 1); }
static inline int tl_wait_for_free_gil_hint(uint64_t spin_ns) {
    uint64_t start = tl_now_ns();
    for (unsigned i = 0;; i++) {
        if (atomic_load(&tl_result_spinners) > 0) return 1;
        if ((i & 31u) == 31u && tl_now_ns() - start >= spin_ns) return 0;
        tl_cpu_relax();
    }
}
static inline uint64_t tl_completion_epoch(void) { return atomic_load(&tl_completions); }
/* Spins (without the GIL) until the epoch moves or spin_ns pass; 1 if it moved. */
static inline int tl_spin_for_completion(uint64_t epoch, uint64_t spin_ns) {
    uint64_t start = tl_now_ns();
    for (unsigned i = 0;; i++) {
        if (atomic_load(&tl_completions) != epoch) return 1;
        if ((i & 31u) == 31u && tl_now_ns() - start >= spin_ns) return 0;
        tl_cpu_relax();
    }
}

/* Adaptive spinning: a spin that keeps running out (the other thread is not
 * on a CPU, as on a loaded machine) shrinks its budget to nothing; a spin that
 * pays off grows it back up to a cap.  With the budget at zero one wait in 16
 * still probes, so the budget can recover.
 *
 * Every field is read and written by many threads without a lock (workers
 * waiting for work, result() callers, a re-arm with a new cap), so every
 * field is atomic.  Relaxed order throughout: these are tuning values that
 * order no other memory; a thread that reads a stale cap or budget spins at
 * most one budget longer or shorter, and nothing it does depends on it. */
typedef struct {
    _Atomic int64_t budget_ns;
    _Atomic uint64_t waits;
    _Atomic int64_t cap_ns;
} tl_spin_policy;

static inline void tl_spin_policy_init(tl_spin_policy *p, int64_t cap_ns) {
    atomic_store_explicit(&p->cap_ns, cap_ns, memory_order_relaxed);
    atomic_store_explicit(&p->budget_ns, cap_ns, memory_order_relaxed);
    atomic_store_explicit(&p->waits, 0, memory_order_relaxed);
}
/* Re-arms the policy with a new cap, if it has another one.  Any number of
 * threads may call it at once: the compare-and-swap lets one of them reset
 * the budget, and the others leave it alone. */
static inline void tl_spin_policy_set_cap(tl_spin_policy *p, int64_t cap_ns) {
    int64_t cap = atomic_load_explicit(&p->cap_ns, memory_order_relaxed);
    if (cap != cap_ns
        && atomic_compare_exchange_strong_explicit(&p->cap_ns, &cap, cap_ns,
                                                   memory_order_relaxed, memory_order_relaxed))
        atomic_store_explicit(&p->budget_ns, cap_ns, memory_order_relaxed);
}
static inline uint64_t tl_spin_budget(tl_spin_policy *p) {
    int64_t budget = atomic_load_explicit(&p->budget_ns, memory_order_relaxed);
    if (budget > 0) return (uint64_t)budget;
    /* The probe must be long enough to succeed when the other thread is on
     * a CPU (a hand-off takes a few microseconds), or the budget never grows back. */
    int64_t cap = atomic_load_explicit(&p->cap_ns, memory_order_relaxed);
    if (cap > 0 && (atomic_fetch_add_explicit(&p->waits, 1, memory_order_relaxed) & 15u) == 0)
        return (uint64_t)(cap < 20000 ? cap : 20000);
    return 0;
}
static inline void tl_spin_outcome(tl_spin_policy *p, int success) {
    int64_t budget = atomic_load_explicit(&p->budget_ns, memory_order_relaxed);
    int64_t cap = atomic_load_explicit(&p->cap_ns, memory_order_relaxed);
    int64_t next = success ? budget * 2 + 5000 : budget / 2;
    if (next > cap) next = cap;
    if (next < 1000) next = 0;
    atomic_store_explicit(&p->budget_ns, next, memory_order_relaxed);
}

/* Counters: monotonic uint64 event counts.  Relaxed ordering is enough: a
 * reader wants each value, not an ordering between them. */
#define TL_COUNTERS 8
typedef struct {
    _Atomic uint64_t values[TL_COUNTERS];
} tl_counters;

static inline void tl_counter_add(tl_counters *c, int index, uint64_t n) {
    atomic_fetch_add_explicit(&c->values[index], n, memory_order_relaxed);
}
static inline uint64_t tl_counter_get(tl_counters *c, int index) {
    return atomic_load_explicit(&c->values[index], memory_order_relaxed);
}

/* A ring of recent durations in nanoseconds, written by any worker. */
#define TL_SAMPLES 4096
typedef struct {
    _Atomic uint64_t next;
    _Atomic uint64_t values[TL_SAMPLES];
} tl_samples;

static inline void tl_samples_add(tl_samples *s, uint64_t value) {
    uint64_t i = atomic_fetch_add_explicit(&s->next, 1, memory_order_relaxed);
    atomic_store_explicit(&s->values[i % TL_SAMPLES], value, memory_order_relaxed);
}

/* Worker gauges: threads holding a slot, threads running a task. */
/* They take plain int64_t* because Cython cannot declare _Atomic fields. */
static inline int64_t tl_load64(int64_t *p) { return atomic_load((_Atomic int64_t *)p); }
static inline int64_t tl_add64(int64_t *p, int64_t n) {
    return atomic_fetch_add((_Atomic int64_t *)p, n) + n;
}
static inline int tl_cas64(int64_t *p, int64_t expected, int64_t desired) {
    return atomic_compare_exchange_strong((_Atomic int64_t *)p, &expected, desired);
}
/* Decrement if positive; returns 1 if it did. */
static inline int tl_take_token(int64_t *p) {
    int64_t v = atomic_load((_Atomic int64_t *)p);
    while (v > 0) {
        if (atomic_compare_exchange_weak((_Atomic int64_t *)p, &v, v - 1)) return 1;
    }
    return 0;
}

#endif

# cython: language_level=3
# Declarations of the C layer (csrc/) shared by the native core.

from libc.stdint cimport int64_t, uint64_t


cdef extern from "tl_atomic.h" nogil:
    ctypedef struct tl_counters:
        pass
    ctypedef struct tl_samples:
        pass
    ctypedef struct tl_mutex:
        pass
    ctypedef struct tl_cond:
        pass
    void tl_mutex_init(tl_mutex *m)
    void tl_mutex_lock(tl_mutex *m)
    void tl_mutex_unlock(tl_mutex *m)
    void tl_cond_init(tl_cond *c)
    void tl_cond_signal(tl_cond *c)
    void tl_cond_wait(tl_cond *c, tl_mutex *m)
    int tl_cond_timedwait_ns(tl_cond *c, tl_mutex *m, uint64_t rel_ns)
    int TL_COUNTERS
    int TL_SAMPLES
    void tl_counter_add(tl_counters *c, int index, uint64_t n)
    uint64_t tl_counter_get(tl_counters *c, int index)
    void tl_samples_add(tl_samples *s, uint64_t value)
    uint64_t tl_now_ns()
    void tl_yield()
    void tl_completion_bump()
    void tl_completion_signal()
    void tl_flush_completion()
    void tl_worker_enter()
    void tl_worker_leave()
    void tl_result_spin_enter()
    void tl_result_spin_leave()
    int tl_wait_for_free_gil_hint(uint64_t spin_ns)
    ctypedef struct tl_spin_policy:
        pass
    void tl_spin_policy_init(tl_spin_policy *p, int64_t cap_ns)
    uint64_t tl_spin_budget(tl_spin_policy *p)
    void tl_spin_outcome(tl_spin_policy *p, int success)
    uint64_t tl_completion_epoch()
    int tl_spin_for_completion(uint64_t epoch, uint64_t spin_ns)
    int64_t tl_load64(int64_t *p)
    int64_t tl_add64(int64_t *p, int64_t n)
    bint tl_cas64(int64_t *p, int64_t expected, int64_t desired)
    bint tl_take_token(int64_t *p)


cdef extern from "tl_queue.h" nogil:
    ctypedef struct tl_entry:
        int64_t priority
        uint64_t seq
        void *fn
        void *args
        void *kwargs
        void *future
        uint64_t enqueued_ns

    ctypedef struct tl_stripe:
        size_t len
        tl_entry *heap

    ctypedef struct tl_queue:
        tl_stripe *stripes
        int nstripes
        int64_t size
        int closed

    int tl_queue_init(tl_queue *q, int nstripes)
    void tl_queue_after_fork(tl_queue *q)
    int tl_queue_push(tl_queue *q, tl_entry *e)
    int tl_queue_push_ex(tl_queue *q, tl_entry *e, int keep_seq)
    int tl_queue_try_pop(tl_queue *q, tl_entry *out)
    int tl_queue_pop_wait(tl_queue *q, tl_entry *out, int64_t timeout_ns, uint64_t spin_ns)
    void tl_queue_close(tl_queue *q)
    void tl_queue_reopen(tl_queue *q)
    size_t tl_stripe_take_all(tl_queue *q, int i, tl_entry **out)
    int tl_stripe_put_back(tl_queue *q, int i, tl_entry *entries, size_t n)
    void tl_queue_free(tl_queue *q)
    int64_t tl_queue_size(tl_queue *q)
    bint tl_queue_closed(tl_queue *q)
    void tl_stripe_lock(tl_queue *q, int i)
    void tl_stripe_unlock(tl_queue *q, int i)


cdef class Counters:
    cdef tl_counters *c


cdef class TaskQueue:
    cdef tl_queue q
    cdef bint initialised
    cdef uint64_t cancelled_skipped
    cdef Counters counters_sink
    cdef uint64_t _push(self, int64_t priority, object fn, object args, object kwargs, object future, int keep_seq=*, uint64_t seq=*) except? 0
    cdef int _pop_live(self, tl_entry *out, int64_t timeout_ns, uint64_t spin_ns, int64_t *idle_tokens) except -2
    cdef object _entry_tuple(self, tl_entry *e)


cdef class Dispatcher:
    cdef readonly TaskQueue queue
    cdef readonly Counters counters
    cdef public object spawn
    cdef int64_t _threads
    cdef int64_t _busy
    cdef int64_t _idle_tokens
    cdef int64_t _max_workers
    cdef int64_t _min_workers
    cdef int64_t _idle_timeout_ns
    cdef uint64_t _spin_ns
    cdef tl_samples *_wait
    cdef tl_samples *_run
    cdef dict _dead
    cdef set _retrying
    cdef bint _closing
    cdef public object reject
    cdef _start_worker(self)
    cdef object _submit_managed(self, object fn, tuple args, dict kwargs, int64_t priority, object name, object retry, object timeout, object on_done, object on_start, object tag, bint run_in_caller, object run_coroutine, Py_ssize_t node)
    cdef void _after_push(self) except *
    cdef void _dead_added(self, int64_t priority) except *
    cdef void _dead_popped(self, int64_t priority) except *
    cdef bint _hold_retry(self, object future) except -1
    cdef void _release_retry(self, object future) except *
    cdef object _rejection(self)
    cdef bint _reserve(self, bint only_if_needed) noexcept
    cdef bint _retire(self, bint idle) noexcept
    cdef int _run_entry(self, tl_entry *e, object run_coroutine) except -1

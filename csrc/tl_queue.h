/* TaskQueue: a lock-striped binary-heap priority queue of call entries.
 *
 * Ordering: an entry with a higher priority pops first; equal priorities pop
 * in push order (a global atomic sequence number).  The heap is split into
 * stripes, each with its own lock; a thread pushes to "its" stripe, so pushes
 * from different threads do not contend.  A pop must still return the best
 * entry of all stripes: each stripe publishes its top (priority, sequence)
 * under a seqlock; a popper reads every top, locks the stripe with the best
 * one, and re-checks that the top is still that entry (retrying if another
 * popper took it).  An entry pushed concurrently with a pop may or may not be
 * seen by it; any entry whose push completed before the pop began is.
 *
 * Nothing here touches a Python object's reference count: entries own their
 * references, which move in at push (taken with the GIL held) and out at pop
 * (given to a caller that will hold the GIL before using them).  So every
 * function below may run without the GIL, and no lock here is ever held while
 * waiting for the GIL: the two can never deadlock.
 */
#ifndef TL_QUEUE_H
#define TL_QUEUE_H

#include <stdlib.h>
#include <string.h>
#include "tl_atomic.h"

typedef struct {
    int64_t priority;
    uint64_t seq;
    void *fn;       /* PyObject*, owned */
    void *args;     /* PyObject* tuple, owned */
    void *kwargs;   /* PyObject* dict or NULL, owned */
    void *future;   /* PyObject* or NULL, owned */
    uint64_t enqueued_ns;
} tl_entry;

typedef struct {
    tl_mutex lock;
    tl_entry *heap;
    size_t len;
    size_t cap;
    /* The published top, under a seqlock: odd version = being written. */
    _Atomic uint64_t version;
    _Atomic int64_t top_priority;
    _Atomic uint64_t top_seq;
    _Atomic int top_present;
    char pad[64];
} tl_stripe;

typedef struct {
    tl_stripe *stripes;
    int nstripes;
    _Atomic uint64_t next_seq;
    _Atomic int64_t size;
    _Atomic int closed;
    _Atomic uint64_t next_stripe;
    tl_mutex wait_lock;
    tl_cond not_empty;
    _Atomic int waiters;
    _Atomic int spinner;
    tl_spin_policy spin;
} tl_queue;

static inline int tl_entry_before(const tl_entry *a, const tl_entry *b) {
    return a->priority > b->priority || (a->priority == b->priority && a->seq < b->seq);
}

static void tl_stripe_publish(tl_stripe *s) {
    uint64_t v = atomic_load(&s->version);
    atomic_store(&s->version, v + 1);
    if (s->len) {
        atomic_store(&s->top_priority, s->heap[0].priority);
        atomic_store(&s->top_seq, s->heap[0].seq);
        atomic_store(&s->top_present, 1);
    } else {
        atomic_store(&s->top_present, 0);
    }
    atomic_store(&s->version, v + 2);
}

/* Returns 0 if the stripe looks empty, else 1 with its top in *p, *q. */
static int tl_stripe_peek(tl_stripe *s, int64_t *p, uint64_t *q) {
    for (;;) {
        uint64_t v1 = atomic_load(&s->version);
        if (v1 & 1u) { tl_cpu_relax(); continue; }
        int present = atomic_load(&s->top_present);
        int64_t prio = atomic_load(&s->top_priority);
        uint64_t seq = atomic_load(&s->top_seq);
        if (atomic_load(&s->version) != v1) continue;
        if (!present) return 0;
        *p = prio;
        *q = seq;
        return 1;
    }
}

static int tl_queue_init(tl_queue *q, int nstripes) {
    memset(q, 0, sizeof(*q));
    if (nstripes < 1) nstripes = 1;
    q->stripes = (tl_stripe *)calloc((size_t)nstripes, sizeof(tl_stripe));
    if (!q->stripes) return -1;
    q->nstripes = nstripes;
    for (int i = 0; i < nstripes; i++) tl_mutex_init(&q->stripes[i].lock);
    tl_mutex_init(&q->wait_lock);
    tl_cond_init(&q->not_empty);
    tl_spin_policy_init(&q->spin, 0);
    return 0;
}

/* After fork() only the forking thread exists; a lock another thread held
 * would stay held forever in the child.  Make them all anew. */
static void tl_queue_after_fork(tl_queue *q) {
    for (int i = 0; i < q->nstripes; i++) tl_mutex_init(&q->stripes[i].lock);
    tl_mutex_init(&q->wait_lock);
    tl_cond_init(&q->not_empty);
    atomic_store(&q->waiters, 0);
    atomic_store(&q->spinner, 0);
}

static void tl_sift_up(tl_entry *heap, size_t i) {
    tl_entry item = heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!tl_entry_before(&item, &heap[parent])) break;
        heap[i] = heap[parent];
        i = parent;
    }
    heap[i] = item;
}

static void tl_sift_down(tl_entry *heap, size_t len, size_t i) {
    tl_entry item = heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= len) break;
        if (child + 1 < len && tl_entry_before(&heap[child + 1], &heap[child])) child++;
        if (!tl_entry_before(&heap[child], &item)) break;
        heap[i] = heap[child];
        i = child;
    }
    heap[i] = item;
}

/* Picks this thread's stripe once: pushes from one thread stay on one lock. */
static int tl_queue_home_stripe(tl_queue *q) {
    static _Thread_local uint64_t home = 0;
    if (!home) home = atomic_fetch_add(&q->next_stripe, 1) + 1;
    return (int)(home % (uint64_t)q->nstripes);
}

/* Push; the entry's references move into the queue on success.  With
 * keep_seq the entry keeps the sequence number it has (a retry goes back to
 * its place among equal priorities); otherwise it takes the next one.
 * Returns 0, -1 if closed (the caller keeps its references), -2 if out of memory. */
static int tl_queue_push_ex(tl_queue *q, tl_entry *e, int keep_seq) {
    tl_stripe *s = &q->stripes[tl_queue_home_stripe(q)];
    tl_mutex_lock(&s->lock);
    /* Checked under the stripe lock: close() takes every stripe lock, so a
     * push either lands before the close or sees it. */
    if (atomic_load(&q->closed)) {
        tl_mutex_unlock(&s->lock);
        return -1;
    }
    if (s->len == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        tl_entry *heap = (tl_entry *)realloc(s->heap, cap * sizeof(tl_entry));
        if (!heap) {
            tl_mutex_unlock(&s->lock);
            return -2;
        }
        s->heap = heap;
        s->cap = cap;
    }
    if (!keep_seq) e->seq = atomic_fetch_add(&q->next_seq, 1);
    s->heap[s->len] = *e;
    tl_sift_up(s->heap, s->len);
    s->len++;
    if (s->heap[0].seq == e->seq) tl_stripe_publish(s);
    tl_mutex_unlock(&s->lock);
    /* Dekker with the waiter: we write size then read waiters; a waiter
     * writes waiters then reads the stripes.  Sequentially consistent, so at
     * least one of us sees the other, and no wake-up is lost. */
    atomic_fetch_add(&q->size, 1);
    if (atomic_load(&q->waiters) > 0) {
        tl_mutex_lock(&q->wait_lock);
        tl_cond_signal(&q->not_empty);
        tl_mutex_unlock(&q->wait_lock);
    }
    return 0;
}

static inline int tl_queue_push(tl_queue *q, tl_entry *e) { return tl_queue_push_ex(q, e, 0); }

static int tl_queue_try_pop(tl_queue *q, tl_entry *out) {
    for (;;) {
        int best = -1;
        int64_t best_priority = 0;
        uint64_t best_seq = 0;
        for (int i = 0; i < q->nstripes; i++) {
            int64_t p;
            uint64_t sq;
            if (!tl_stripe_peek(&q->stripes[i], &p, &sq)) continue;
            if (best < 0 || p > best_priority || (p == best_priority && sq < best_seq)) {
                best = i;
                best_priority = p;
                best_seq = sq;
            }
        }
        if (best < 0) return 0;
        tl_stripe *s = &q->stripes[best];
        tl_mutex_lock(&s->lock);
        if (s->len == 0 || s->heap[0].seq != best_seq) {
            /* Another popper took it first: look again. */
            tl_mutex_unlock(&s->lock);
            continue;
        }
        *out = s->heap[0];
        s->len--;
        if (s->len) {
            s->heap[0] = s->heap[s->len];
            tl_sift_down(s->heap, s->len, 0);
        }
        tl_stripe_publish(s);
        tl_mutex_unlock(&s->lock);
        atomic_fetch_sub(&q->size, 1);
        return 1;
    }
}

/* Blocking pop, to be called without the GIL.
 * timeout_ns < 0: wait forever.  spin_ns: how long one waiter may spin
 * (without sleeping) before blocking; only one waiter spins at a time.
 * Returns 1 (popped), 0 (timed out) or -1 (closed and empty). */
static int tl_queue_pop_wait(tl_queue *q, tl_entry *out, int64_t timeout_ns, uint64_t spin_ns) {
    int closed = atomic_load(&q->closed);
    if (tl_queue_try_pop(q, out)) return 1;
    if (closed) return -1;
    uint64_t start = tl_now_ns();
    if (spin_ns) {
        tl_spin_policy_set_cap(&q->spin, (int64_t)spin_ns);
        spin_ns = tl_spin_budget(&q->spin);
    }
    if (spin_ns && (timeout_ns < 0 || (uint64_t)timeout_ns > spin_ns)) {
        int expected = 0;
        if (atomic_compare_exchange_strong(&q->spinner, &expected, 1)) {
            int got = 0;
            for (unsigned i = 0;; i++) {
                if (atomic_load(&q->size) > 0 && tl_queue_try_pop(q, out)) { got = 1; break; }
                if (atomic_load(&q->closed)) break;
                if ((i & 63u) == 63u && tl_now_ns() - start >= spin_ns) break;
                tl_cpu_relax();
            }
            atomic_store(&q->spinner, 0);
            tl_spin_outcome(&q->spin, got);
            if (got) return 1;
        }
    }
    int result;
    tl_mutex_lock(&q->wait_lock);
    atomic_fetch_add(&q->waiters, 1);
    for (;;) {
        /* Read closed before trying: once closed no push can succeed, so an
         * empty queue seen after it stays empty. */
        closed = atomic_load(&q->closed);
        if (tl_queue_try_pop(q, out)) { result = 1; break; }
        if (closed) { result = -1; break; }
        if (timeout_ns < 0) {
            tl_cond_wait(&q->not_empty, &q->wait_lock);
        } else {
            uint64_t elapsed = tl_now_ns() - start;
            if (elapsed >= (uint64_t)timeout_ns) {
                result = tl_queue_try_pop(q, out) ? 1 : 0;
                break;
            }
            tl_cond_timedwait_ns(&q->not_empty, &q->wait_lock, (uint64_t)timeout_ns - elapsed);
        }
    }
    atomic_fetch_sub(&q->waiters, 1);
    tl_mutex_unlock(&q->wait_lock);
    return result;
}

static void tl_queue_close(tl_queue *q) {
    for (int i = 0; i < q->nstripes; i++) tl_mutex_lock(&q->stripes[i].lock);
    atomic_store(&q->closed, 1);
    for (int i = q->nstripes - 1; i >= 0; i--) tl_mutex_unlock(&q->stripes[i].lock);
    tl_mutex_lock(&q->wait_lock);
    tl_cond_broadcast(&q->not_empty);
    tl_mutex_unlock(&q->wait_lock);
}

static void tl_queue_reopen(tl_queue *q) {
    for (int i = 0; i < q->nstripes; i++) tl_mutex_lock(&q->stripes[i].lock);
    atomic_store(&q->closed, 0);
    for (int i = q->nstripes - 1; i >= 0; i--) tl_mutex_unlock(&q->stripes[i].lock);
}

/* Moves every entry of stripe i into *out (malloc'd, caller frees); returns count.
 * Used to drain and to filter (the caller pushes back what it keeps). */
static size_t tl_stripe_take_all(tl_queue *q, int i, tl_entry **out) {
    tl_stripe *s = &q->stripes[i];
    tl_mutex_lock(&s->lock);
    size_t n = s->len;
    *out = s->heap;
    s->heap = NULL;
    s->len = s->cap = 0;
    tl_stripe_publish(s);
    tl_mutex_unlock(&s->lock);
    atomic_fetch_sub(&q->size, (int64_t)n);
    return n;
}

/* Puts entries back into stripe i keeping their sequence numbers. */
static int tl_stripe_put_back(tl_queue *q, int i, tl_entry *entries, size_t n) {
    tl_stripe *s = &q->stripes[i];
    tl_mutex_lock(&s->lock);
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->len + n) cap *= 2;
        tl_entry *heap = (tl_entry *)realloc(s->heap, cap * sizeof(tl_entry));
        if (!heap) { tl_mutex_unlock(&s->lock); return -1; }
        s->heap = heap;
        s->cap = cap;
    }
    for (size_t k = 0; k < n; k++) {
        s->heap[s->len] = entries[k];
        tl_sift_up(s->heap, s->len);
        s->len++;
    }
    tl_stripe_publish(s);
    tl_mutex_unlock(&s->lock);
    atomic_fetch_add(&q->size, (int64_t)n);
    if (n && atomic_load(&q->waiters) > 0) {
        tl_mutex_lock(&q->wait_lock);
        tl_cond_broadcast(&q->not_empty);
        tl_mutex_unlock(&q->wait_lock);
    }
    return 0;
}

static void tl_queue_free(tl_queue *q) {
    for (int i = 0; i < q->nstripes; i++) {
        free(q->stripes[i].heap);
        tl_mutex_destroy(&q->stripes[i].lock);
    }
    free(q->stripes);
    q->stripes = NULL;
    q->nstripes = 0;
    tl_mutex_destroy(&q->wait_lock);
    tl_cond_destroy(&q->not_empty);
}

static inline int64_t tl_queue_size(tl_queue *q) { return atomic_load(&q->size); }
static inline int tl_queue_closed(tl_queue *q) { return atomic_load(&q->closed); }
static inline void tl_stripe_lock(tl_queue *q, int i) { tl_mutex_lock(&q->stripes[i].lock); }
static inline void tl_stripe_unlock(tl_queue *q, int i) { tl_mutex_unlock(&q->stripes[i].lock); }

#endif

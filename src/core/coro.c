/*
 * coro.c - coroutines: stacks, the pool, and the switch discipline.
 *
 * A coroutine's struct lives at the top of its own stack mapping, so creating one from
 * the pool is a pointer pop and nothing else. Under AddressSanitizer every switch is
 * announced to the runtime (the fiber API), or it would report false stack overflows.
 */
#include "core/coro.h"

#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/coro_ctx.h"
#include "core/util.h"

#if defined(__SANITIZE_ADDRESS__)
#define NX_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NX_ASAN 1
#endif
#endif

#ifdef NX_ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old,
                                     size_t *size_old);
#define DEFAULT_STACK (512 * 1024)
#else
#define DEFAULT_STACK (128 * 1024)
#endif

#define POOL_MAX 1024

struct nx_coro {
    struct nx_ctx ctx;
    struct nx_ctx *caller;
    nx_coro_fn fn;
    void *arg;
    void *map; /* whole mapping: guard page + stack */
    size_t map_len;
    void *stack; /* usable stack base (above the guard) */
    size_t stack_len;
    bool done;
    nx_coro *next_free;
    nx_coro_fn on_exit;
    void *exit_arg;
    void *wait; /* the wait it is parked in (core/wait.c), or NULL */
#ifdef NX_ASAN
    void *fake_stack;
#endif
};

static size_t stack_size = DEFAULT_STACK;
static nx_coro *pool;
static size_t pool_len;
static size_t live;
static nx_coro *current;
static struct nx_ctx main_ctx;
#ifdef NX_ASAN
static const void *main_stack_bottom;
static size_t main_stack_size;
static void *main_fake_stack;
#endif

void nx_coro_set_stack_size(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size = (size + page - 1) / page * page;
    if (size != stack_size)
        nx_coro_pool_drain(); /* pooled stacks have the old size */
    stack_size = size;
}

static nx_coro *stack_new(void)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t len = stack_size + page;
    void *map =
        mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (map == MAP_FAILED)
        nx_oom();
    /* The stack grows down: the guard page is the lowest page of the mapping. */
    if (mprotect(map, page, PROT_NONE) != 0)
        nx_oom();
    /* The struct sits at the very top; the usable stack runs up to it. */
    nx_coro *c = (nx_coro *)((char *)map + len - ((sizeof(nx_coro) + 63) & ~(size_t)63));
    c->map = map;
    c->map_len = len;
    c->stack = (char *)map + page;
    c->stack_len = (size_t)((char *)c - (char *)c->stack);
    return c;
}

static void coro_main(void *arg)
{
    nx_coro *c = arg;
#ifdef NX_ASAN
    __sanitizer_finish_switch_fiber(NULL, &main_stack_bottom, &main_stack_size);
#endif
    c->fn(c->arg);
    c->done = true;
    current = NULL;
#ifdef NX_ASAN
    /* NULL: this fiber's fake stack can be freed, the coroutine never runs again. */
    __sanitizer_start_switch_fiber(NULL, main_stack_bottom, main_stack_size);
#endif
    nx_ctx_switch(&c->ctx, c->caller);
    NX_ASSERT(!"a finished coroutine was resumed");
}

nx_coro *nx_coro_new(nx_coro_fn fn, void *arg)
{
    nx_coro *c;
    if (pool) {
        c = pool;
        pool = c->next_free;
        pool_len--;
    } else {
        c = stack_new();
    }
    c->fn = fn;
    c->arg = arg;
    c->done = false;
    c->caller = &main_ctx;
    c->next_free = NULL;
    c->on_exit = NULL;
    c->exit_arg = NULL;
    c->wait = NULL;
    nx_ctx_make(&c->ctx, c->stack, c->stack_len, coro_main, c);
    live++;
    return c;
}

void nx_coro_resume(nx_coro *c)
{
    NX_ASSERT(current == NULL && !c->done);
    current = c;
#ifdef NX_ASAN
    __sanitizer_start_switch_fiber(&main_fake_stack, c->stack, c->stack_len);
#endif
    nx_ctx_switch(&main_ctx, &c->ctx);
#ifdef NX_ASAN
    __sanitizer_finish_switch_fiber(main_fake_stack, NULL, NULL);
#endif
    current = NULL;
    if (c->done && c->on_exit)
        c->on_exit(c->exit_arg);
}

void nx_coro_on_exit(nx_coro *c, nx_coro_fn fn, void *arg)
{
    c->on_exit = fn;
    c->exit_arg = arg;
}

void nx_coro_yield(void)
{
    nx_coro *c = current;
    NX_ASSERT(c != NULL);
    current = NULL;
#ifdef NX_ASAN
    __sanitizer_start_switch_fiber(&c->fake_stack, main_stack_bottom, main_stack_size);
#endif
    nx_ctx_switch(&c->ctx, c->caller);
#ifdef NX_ASAN
    __sanitizer_finish_switch_fiber(c->fake_stack, &main_stack_bottom, &main_stack_size);
#endif
    current = c;
}

bool nx_coro_is_done(const nx_coro *c)
{
    return c->done;
}

void nx_coro_set_wait(nx_coro *c, void *wait)
{
    c->wait = wait;
}

void *nx_coro_wait(const nx_coro *c)
{
    return c->wait;
}

nx_coro *nx_coro_current(void)
{
    return current;
}

void nx_coro_free(nx_coro *c)
{
    if (!c)
        return;
    live--;
    if (pool_len < POOL_MAX) {
        c->next_free = pool;
        pool = c;
        pool_len++;
        return;
    }
    munmap(c->map, c->map_len);
}

void nx_coro_pool_drain(void)
{
    while (pool) {
        nx_coro *c = pool;
        pool = c->next_free;
        munmap(c->map, c->map_len);
    }
    pool_len = 0;
}

size_t nx_coro_pool_size(void)
{
    return pool_len;
}

size_t nx_coro_live(void)
{
    return live;
}

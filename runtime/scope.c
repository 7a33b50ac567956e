/*
 * scope.c — scopes: who releases the tensors that ops return.
 *
 * Eager code creates many intermediates; releasing each by hand is noise. A
 * scope (em_scope_begin/em_scope_end) owns every tensor returned while it is the
 * innermost open scope and releases them all at its end. em_keep(t) moves t's
 * ownership one scope out, or to the caller when no scope encloses it. With no
 * scope open, the caller owns what it gets, as in plain C.
 *
 * Scopes are per thread (a stack of growable arrays), so threads never share
 * one. A scope holds exactly the reference the op returned: the refcount is not
 * touched when a tensor is adopted, moved or kept.
 */
#include "runtime.h"

#include <stdlib.h>

typedef struct scope {
    em_tensor **items; /* owned references */
    size_t n, cap;
} scope;

static _Thread_local scope *stack;  /* open scopes, innermost last */
static _Thread_local int depth, stack_cap;

int rt_scope_depth(void) { return depth; }

static int scope_push_item(scope *s, em_tensor *t) {
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        em_tensor **items = rt_malloc(cap * sizeof *items, "em_scope");
        if (!items) return -1;
        for (size_t i = 0; i < s->n; i++) items[i] = s->items[i];
        free(s->items);
        s->items = items;
        s->cap = cap;
    }
    s->items[s->n++] = t;
    return 0;
}

em_tensor *rt_scope_adopt(em_tensor *t) {
    if (!t || depth == 0) return t;
    if (scope_push_item(&stack[depth - 1], t) != 0) {
        em_release(t);
        return NULL;
    }
    return t;
}

void em_scope_begin(void) {
    if (depth == stack_cap) {
        int cap = stack_cap ? stack_cap * 2 : 8;
        scope *s = realloc(stack, (size_t)cap * sizeof *s);
        EM_ASSERT(s); /* a few bytes of bookkeeping; nothing sensible to return */
        stack = s;
        stack_cap = cap;
    }
    stack[depth++] = (scope){0};
}

void em_scope_end(void) {
    if (depth == 0) {
        rt_error("em_scope_end: no scope is open");
        return;
    }
    scope *s = &stack[--depth];
    for (size_t i = s->n; i-- > 0;) em_release(s->items[i]);
    free(s->items);
    if (depth == 0) {
        free(stack);
        stack = NULL;
        stack_cap = 0;
    }
}

em_tensor *em_keep(em_tensor *t) {
    if (!t || depth == 0) return t;
    scope *s = &stack[depth - 1];
    for (size_t i = s->n; i-- > 0;) {
        if (s->items[i] != t) continue;
        if (depth >= 2 && scope_push_item(&stack[depth - 2], t) != 0) return NULL;
        s->items[i] = s->items[--s->n];
        return t;
    }
    return t; /* not owned by the innermost scope: already outside it */
}

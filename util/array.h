/* SPDX-License-Identifier: MIT */
/*
 * The library's one growable array: a heap array, its element count kept
 * by the caller and its capacity by ARRAY_RESERVE().  Every list that grows
 * as it is filled (freed slots, problems found, uffds, deferred faults ...)
 * grows through it, so growth is amortised O(1) and overflow-checked in
 * one place.
 */
#ifndef VSWAP_UTIL_ARRAY_H
#define VSWAP_UTIL_ARRAY_H

#include <stddef.h>

/*
 * Make room for at least @need elements of @elem bytes in *@arr, whose
 * capacity is *@cap elements.  The capacity doubles, starting at @first,
 * until it holds @need.  0; or -ENOMEM when realloc fails or the size does
 * not fit a size_t, with *@arr and *@cap unchanged (the array keeps what it
 * held).
 */
int array_reserve(void **arr, size_t *cap, size_t need, size_t elem, size_t first);

/* ARRAY_RESERVE(v, cap, need, first) for any element type: @cap must be a
 * size_t lvalue. */
#define ARRAY_RESERVE(arr, cap, need, first)                                                       \
	array_reserve((void **)&(arr), &(cap), (need), sizeof(*(arr)), (first))

#endif

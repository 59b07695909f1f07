/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "util/array.h"

int array_reserve(void **arr, size_t *cap, size_t need, size_t elem, size_t first)
{
	size_t n = *cap ? *cap : (first ? first : 1);
	size_t bytes;
	void *p;

	if (need <= *cap)
		return 0;
	while (n < need) {
		if (n > SIZE_MAX / 2)
			return -ENOMEM;
		n *= 2;
	}
	if (__builtin_mul_overflow(n, elem, &bytes))
		return -ENOMEM;
	p = realloc(*arr, bytes ? bytes : 1);
	if (!p)
		return -ENOMEM;
	*arr = p;
	*cap = n;
	return 0;
}

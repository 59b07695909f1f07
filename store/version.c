/* SPDX-License-Identifier: MIT */
/* The library's version, as compiled (see include/vswap/version.h). */
#include <vswap/version.h>

const char *vswap_version(void)
{
	return VSWAP_VERSION;
}

int vswap_version_number(void)
{
	return VSWAP_VERSION_NUMBER;
}

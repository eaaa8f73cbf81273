/* sysmem.c - see sysmem.h.  Like timer.c this is a file that asks the
 * system (windows.h on Win32); elsewhere it reads Linux's /proc/meminfo
 * with plain stdio, and says nothing on other systems. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <windows.h>
#endif
#include "sysmem.h"

#ifdef _WIN32
double sysmem_available(void)
{
    MEMORYSTATUS status;
    double avail, half;
    status.dwLength = sizeof(status);
    GlobalMemoryStatus(&status);
    /* Windows 98 counts its disk cache as used, so dwAvailPhys alone is
     * low right after boot: half the RAM is what a 128 MB machine gives a
     * program once the system is up. */
    avail = (double)status.dwAvailPhys;
    half = (double)status.dwTotalPhys / 2.0;
    return avail > half ? avail : half;
}
#else
/* The value in kB of the /proc/meminfo line starting with `key`, or -1. */
static double meminfo_kb(const char *key)
{
    char line[128];
    size_t n = strlen(key);
    double kb = -1.0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f == NULL) {
        return -1.0;
    }
    while (fgets(line, (int)sizeof(line), f) != NULL) {
        if (strncmp(line, key, n) == 0) {
            kb = strtod(line + n, NULL);
            break;
        }
    }
    fclose(f);
    return kb;
}

double sysmem_available(void)
{
    double kb = meminfo_kb("MemAvailable:");
    if (kb < 0.0) {
        kb = meminfo_kb("MemFree:");
    }
    return kb < 0.0 ? -1.0 : kb * 1024.0;
}
#endif

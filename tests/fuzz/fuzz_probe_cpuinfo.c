/* libFuzzer target: the host probe's parsers of text from outside the process: the
 * /proc/cpuinfo flags line, `runsc --version` and Kata's shim's version output, and the
 * NVIDIA driver's version file. The input is given exactly (not NUL-terminated, so a
 * parser reading past its length trips ASan); any input gives an answer or none. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isolation/probe/gpu.h"
#include "isolation/probe/probe.h"
#include "isolation/probe/runtimes.h"

static void check_token(char *v)
{
    /* A version is a non-empty token with no whitespace in it. */
    if (v && (!*v || strpbrk(v, " \t\n\r")))
        abort();
    free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size ? size : 1);
    if (!text)
        return 0;
    memcpy(text, data, size);

    const char *virt = NULL;
    bool hv = false;
    if (iso_probe_parse_cpuinfo(&virt, &hv, text, size) == 0 && virt && strcmp(virt, "vmx") != 0 &&
        strcmp(virt, "svm") != 0)
        abort();
    check_token(iso_runtimes_parse_runsc_version(text, size));
    check_token(iso_runtimes_parse_kata_version(text, size));
    check_token(iso_gpu_parse_driver_version(text, size));
    free(text);
    return 0;
}

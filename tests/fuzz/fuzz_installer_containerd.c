/* libFuzzer target: the containerd config scanner, merge and unmerge, on untrusted config
 * text (a node's /etc/containerd/config.toml). The first byte picks the block; the rest is
 * the file. Never a crash; every failure says why; and whenever merge succeeds:
 *   merge(merge(x)) == merge(x)             (a second run changes nothing)
 *   unmerge(merge(x)) == unmerge(x)         (== x when x had no block: the original bytes) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "isolation/installer/containerd.h"

static char *block(iso_containerd_version v, unsigned pick)
{
    static const iso_runtime_entry all[] = {
        {"runsc", ISO_RUNTIME_RUNSC},
        {"runsc-nonet", ISO_RUNTIME_RUNSC_NONET},
        {"runsc-nvproxy", ISO_RUNTIME_RUNSC_NVPROXY},
        {"kata-clh", ISO_RUNTIME_KATA_CLH},
        {"kata-qemu-nvidia-gpu", ISO_RUNTIME_KATA_GPU},
    };
    iso_runtime_paths p;
    iso_runtime_paths_default(&p);
    char *b = NULL;
    moat_error err = MOAT_ERROR_INIT;
    if (iso_containerd_block(&b, v, all, 1 + pick % ELEMENTSOF(all), &p, &err) < 0)
        abort();
    return b;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned pick = data[0];
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    moat_error err = MOAT_ERROR_INIT;

    iso_containerd_version v = ISO_CONTAINERD_V3;
    if (iso_containerd_version_detect(&v, text, len, &err) < 0) {
        if (!err.message)
            abort();
        moat_error_clear(&err);
        v = pick & 0x80 ? ISO_CONTAINERD_V2 : ISO_CONTAINERD_V3;
    }
    char *un = NULL;
    if (iso_containerd_unmerge(&un, text, len, &err) < 0) {
        if (!err.message)
            abort();
        moat_error_clear(&err);
    }
    char *b = block(v, pick);
    char *once = NULL;
    if (iso_containerd_merge(&once, text, len, b, &err) < 0) {
        if (!err.message)
            abort();
        moat_error_clear(&err);
    } else {
        if (!un)
            abort(); /* merge read a block that unmerge could not */
        char *twice = NULL, *back = NULL;
        if (iso_containerd_merge(&twice, once, strlen(once), b, &err) < 0 ||
            strcmp(twice, once) != 0)
            abort();
        if (iso_containerd_unmerge(&back, once, strlen(once), &err) < 0 || strcmp(back, un) != 0)
            abort();
        if (!memchr(text, '#', len) && (strlen(un) != len || memcmp(un, text, len) != 0))
            abort(); /* no marker at all: unmerge must give the very bytes */
        free(twice);
        free(back);
    }
    free(once);
    free(b);
    free(un);
    return 0;
}

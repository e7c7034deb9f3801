#include "kata.h"

#include <string.h>

#include "libmoat/strbuf.h"

int iso_kata_dropin(char **out, iso_runtime_kind kind, const iso_kata_sizing *s, moat_error *err)
{
    /* The hypervisor table of each configuration: configuration-clh.toml has
     * [hypervisor.clh], configuration-qemu-nvidia-gpu.toml [hypervisor.qemu]. */
    const char *table = kind == ISO_RUNTIME_KATA_CLH   ? "clh"
                        : kind == ISO_RUNTIME_KATA_GPU ? "qemu"
                                                       : NULL;
    if (!table)
        return moat_error_set(err, MOAT_E_INVALID, "kata drop-in: runtime kind %d is not Kata",
                              (int)kind);
    if (s->vcpus < 1 || s->vcpus > 256)
        return moat_error_set(err, MOAT_E_RANGE, "kata drop-in: %u vCPUs (1 to 256)", s->vcpus);
    if (s->memory_mib < 256 || s->memory_mib > 1048576)
        return moat_error_set(err, MOAT_E_RANGE, "kata drop-in: %u MiB of memory (256 to 1048576)",
                              s->memory_mib);
    moat_strbuf b = {0};
    moat_strbuf_appendf(&b,
                        "# Moat's sizing of Kata's base VM, written by Moat's installer "
                        "(rewritten on every run, removed on uninstall).\n"
                        "[hypervisor.%s]\n"
                        "default_vcpus = %u\n"
                        "default_memory = %u\n",
                        table, s->vcpus, s->memory_mib);
    if (b.truncated || !b.buf) {
        free(b.buf);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    *out = moat_strbuf_take(&b);
    return 0;
}

int iso_kata_dropin_path(char **out, iso_runtime_kind kind, const iso_runtime_paths *p,
                         moat_error *err)
{
    const char *config = kind == ISO_RUNTIME_KATA_CLH   ? p->kata_clh_config
                         : kind == ISO_RUNTIME_KATA_GPU ? p->kata_gpu_config
                                                        : NULL;
    if (kind != ISO_RUNTIME_KATA_CLH && kind != ISO_RUNTIME_KATA_GPU)
        return moat_error_set(err, MOAT_E_INVALID, "kata drop-in: runtime kind %d is not Kata",
                              (int)kind);
    if (iso_containerd_path_check("kata config", config, err) < 0)
        return -1;
    const char *slash = strrchr(config, '/');
    moat_strbuf b = {0};
    moat_strbuf_appendf(&b, "%.*s/config.d/%s", (int)(slash - config), config,
                        ISO_KATA_DROPIN_NAME);
    if (b.truncated || !b.buf) {
        free(b.buf);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    *out = moat_strbuf_take(&b);
    return 0;
}

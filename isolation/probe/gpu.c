#include "isolation/probe/gpu.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "isolation/probe/probe.h"
#include "libmoat/names.h"

#define SYSFS_MAX   4096u
#define VERSION_MAX (64u << 10)
#define INFO_MAX    (64u << 10)
#define MAX_GPUS    1024u /* PCI functions considered; more is not a real host */

#define NVIDIA_VENDOR "0x10de"

char *iso_gpu_parse_driver_version(const char *text, size_t len)
{
    /* "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 ..." or, for
     * the open module, "... Open Kernel Module for x86_64  550.54.15  Release Build ...";
     * /sys/module/nvidia/version holds the number alone. */
    for (size_t i = 0; i < len;) {
        while (i < len && isspace((unsigned char)text[i]))
            i++;
        size_t j = i, dots = 0;
        bool shaped = true;
        while (j < len && !isspace((unsigned char)text[j])) {
            char c = text[j];
            if (c == '.') {
                if (j == i || text[j - 1] == '.')
                    shaped = false;
                dots++;
            } else if (!isdigit((unsigned char)c)) {
                shaped = false;
            }
            j++;
        }
        if (shaped && dots >= 1 && dots <= 3 && j > i && text[j - 1] != '.' && j - i <= 32)
            return strndup(text + i, j - i);
        i = j;
    }
    return NULL;
}

/* "NVIDIA H100 80GB HBM3" as GPU feature discovery labels it: NVIDIA-H100-80GB-HBM3. */
static char *product_from_model(const char *model)
{
    while (*model == ' ' || *model == '\t')
        model++;
    size_t n = strcspn(model, "\n");
    while (n > 0 && (model[n - 1] == ' ' || model[n - 1] == '\t'))
        n--;
    if (n == 0 || n > 63)
        return NULL;
    char *p = strndup(model, n);
    if (!p)
        return NULL;
    for (char *c = p; *c; c++)
        if (!isalnum((unsigned char)*c) && *c != '.' && *c != '_')
            *c = '-';
    if (strncmp(p, "NVIDIA-", 7) != 0) {
        char *q = iso_strf("NVIDIA-%s", p);
        free(p);
        return q;
    }
    return p;
}

static char *model_of(const char *root, const char *address, bool *nomem)
{
    _cleanup_free_ char *rel = iso_strf("/proc/driver/nvidia/gpus/%s/information", address);
    _cleanup_free_ char *info = NULL;
    if (!rel) {
        *nomem = true;
        return NULL;
    }
    int e = iso_read_small(&info, root, rel, INFO_MAX);
    if (e == -ENOMEM)
        *nomem = true;
    if (e < 0)
        return NULL;
    for (char *line = info; line && *line;) {
        char *next = strchr(line, '\n');
        if (strncmp(line, "Model:", 6) == 0) {
            if (next)
                *next = '\0';
            return product_from_model(line + 6);
        }
        line = next ? next + 1 : NULL;
    }
    return NULL;
}

/* A file of a PCI function, or NULL. */
static char *pci_attr(const char *root, const char *address, const char *name, bool *nomem)
{
    _cleanup_free_ char *rel = iso_strf("/sys/bus/pci/devices/%s/%s", address, name);
    char *v = NULL;
    if (!rel) {
        *nomem = true;
        return NULL;
    }
    int e = iso_read_small(&v, root, rel, SYSFS_MAX);
    if (e == -ENOMEM)
        *nomem = true;
    return e < 0 ? NULL : v;
}

static char *pci_driver(const char *root, const char *address, bool *nomem)
{
    _cleanup_free_ char *rel = iso_strf("/sys/bus/pci/devices/%s/driver", address);
    _cleanup_free_ char *full = rel ? iso_path_join(root, rel) : NULL;
    if (!full) {
        *nomem = true;
        return NULL;
    }
    char target[PATH_MAX];
    ssize_t n = readlink(full, target, sizeof target - 1);
    if (n < 0 || (size_t)n >= sizeof target - 1)
        return NULL; /* none bound, or a link no sysfs makes */
    target[n] = '\0';
    const char *base = strrchr(target, '/');
    char *d = strdup(base ? base + 1 : target);
    if (!d)
        *nomem = true;
    return d;
}

static int by_name(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static size_t count_dev_nodes(const char *root, bool *nomem)
{
    _cleanup_free_ char *dev = iso_path_join(root, "/dev");
    if (!dev) {
        *nomem = true;
        return 0;
    }
    DIR *d = opendir(dev);
    if (!d)
        return 0;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        /* nvidia0, nvidia1, ...; not nvidiactl, nvidia-uvm, nvidia-modeset. */
        const char *s = e->d_name;
        if (strncmp(s, "nvidia", 6) != 0 || !s[6])
            continue;
        bool digits = true;
        for (const char *c = s + 6; *c; c++)
            digits = digits && isdigit((unsigned char)*c);
        n += digits;
    }
    closedir(d);
    return n;
}

static void device_clear(iso_gpu_device *d)
{
    free(d->address);
    free(d->device);
    free(d->driver);
    free(d->product);
}

int iso_gpu_probe(iso_gpu_result *out, const char *root, moat_error *err)
{
    if (!out)
        return moat_error_set(err, MOAT_E_INVALID, "GPU probe: no result");

    iso_gpu_result r = {.mode = MOAT_GPU_MODE_NONE};
    bool nomem = false;
    struct dirent **names = NULL;
    int n = -1;
    _cleanup_free_ char *others = NULL;

    _cleanup_free_ char *pci = iso_path_join(root, "/sys/bus/pci/devices");
    if (!pci)
        goto nomem;
    n = scandir(pci, &names, NULL, by_name);
    for (int i = 0; i < n && !nomem; i++) {
        const char *address = names[i]->d_name;
        if (address[0] == '.' || r.n_devices >= MAX_GPUS)
            continue;
        _cleanup_free_ char *vendor = pci_attr(root, address, "vendor", &nomem);
        _cleanup_free_ char *class = pci_attr(root, address, "class", &nomem);
        if (!vendor || !class || strcmp(vendor, NVIDIA_VENDOR) != 0 ||
            strncmp(class, "0x03", 4) != 0)
            continue;
        iso_gpu_device *grown = realloc(r.devices, (r.n_devices + 1) * sizeof *grown);
        if (!grown) {
            nomem = true;
            break;
        }
        r.devices = grown;
        iso_gpu_device *d = &r.devices[r.n_devices++];
        *d = (iso_gpu_device){0};
        d->address = strdup(address);
        d->device = pci_attr(root, address, "device", &nomem);
        d->driver = pci_driver(root, address, &nomem);
        if (!d->address)
            nomem = true;
        if (d->driver && strcmp(d->driver, "nvidia") == 0)
            d->product = model_of(root, address, &nomem);
        if (!d->product && !nomem) {
            const char *id = d->device ? d->device : "unknown";
            if (strncmp(id, "0x", 2) == 0)
                id += 2;
            d->product = iso_strf("NVIDIA-%s", id);
            if (!d->product)
                nomem = true;
        }
    }
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
    if (nomem)
        goto nomem;

    r.dev_nodes = count_dev_nodes(root, &nomem);
    {
        _cleanup_free_ char *v = NULL;
        int e = iso_read_small(&v, root, "/sys/module/nvidia/version", VERSION_MAX);
        if (e < 0 && e != -ENOMEM)
            e = iso_read_small(&v, root, "/proc/driver/nvidia/version", VERSION_MAX);
        if (e == -ENOMEM)
            goto nomem;
        if (e == 0)
            r.driver_version = iso_gpu_parse_driver_version(v, strlen(v));
    }

    size_t nv = 0, vf = 0, other = 0;
    const iso_gpu_device *first_nv = NULL, *first_vf = NULL;
    for (size_t i = 0; i < r.n_devices; i++) {
        const char *drv = r.devices[i].driver;
        if (drv && strcmp(drv, "nvidia") == 0) {
            first_nv = first_nv ? first_nv : &r.devices[i];
            nv++;
        } else if (drv && strcmp(drv, "vfio-pci") == 0) {
            first_vf = first_vf ? first_vf : &r.devices[i];
            vf++;
        } else {
            other++;
        }
    }
    others = other ? iso_strf("; %zu on no usable driver", other) : strdup("");
    if (!others)
        goto nomem;
    const iso_gpu_device *first = NULL;
    if (r.n_devices == 0) {
        r.reason = strdup("no NVIDIA GPU");
    } else if (nv && vf) {
        r.reason = iso_strf("mixed: %zu on nvidia, %zu on vfio-pci%s; one GPU mode per node", nv,
                            vf, others);
    } else if (nv) {
        r.mode = MOAT_GPU_MODE_CONTAINER;
        r.count = nv;
        first = first_nv;
        r.reason = iso_strf("%zu GPU%s on nvidia%s%s", nv, nv == 1 ? "" : "s", others,
                            r.dev_nodes ? "" : "; no /dev/nvidia<N> device nodes yet");
    } else if (vf) {
        r.mode = MOAT_GPU_MODE_VM;
        r.count = vf;
        first = first_vf;
        r.reason = iso_strf("%zu GPU%s on vfio-pci%s", vf, vf == 1 ? "" : "s", others);
    } else {
        const char *drv = r.devices[0].driver;
        r.reason = iso_strf("%zu NVIDIA GPU%s, none on nvidia or vfio-pci (%s)", r.n_devices,
                            r.n_devices == 1 ? "" : "s", drv ? drv : "no driver bound");
    }
    if (!r.reason || (first && !(r.product = strdup(first->product))))
        goto nomem;
    *out = r;
    return 0;

nomem:
    iso_gpu_result_clear(&r);
    return moat_error_set(err, MOAT_E_NOMEM, "GPU probe: out of memory");
}

void iso_gpu_result_clear(iso_gpu_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_devices; i++)
        device_clear(&r->devices[i]);
    free(r->devices);
    free(r->reason);
    free(r->product);
    free(r->driver_version);
    *r = (iso_gpu_result){0};
}

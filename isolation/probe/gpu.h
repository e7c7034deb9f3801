/* The GPU part of the host probe: NVIDIA GPUs and the mode they can be used in.
 *
 * A GPU is a PCI function of vendor 0x10de whose class is a display controller (0x03xxxx),
 * read from <root>/sys/bus/pci/devices/<address>/{vendor,class,device} and the name of
 * its `driver` link. Bound to `nvidia`, it serves containers (gVisor's nvproxy, mode
 * "container"); bound to `vfio-pci`, it can be passed through to a VM (Kata, mode
 * "vm-passthrough"). One node has one mode: GPUs on both drivers are reported as mode
 * "none" with the reason, since a pod could otherwise be promised a GPU of the wrong kind.
 * The driver version comes from <root>/sys/module/nvidia/version or
 * <root>/proc/driver/nvidia/version; the product from the driver's
 * <root>/proc/driver/nvidia/gpus/<address>/information ("Model:"), as the GPU feature
 * discovery names it (spaces become dashes: "NVIDIA-H100-80GB-HBM3"), or "NVIDIA-<device
 * id>" (e.g. "NVIDIA-2330") when the NVIDIA driver does not hold the GPU. */
#ifndef MOAT_ISO_GPU_H
#define MOAT_ISO_GPU_H

#include <stddef.h>

#include "libmoat/error.h"

typedef struct {
    char *address; /* owned: "0000:3b:00.0" */
    char *device;  /* owned: the PCI device id, "0x2330" */
    char *driver;  /* owned: "nvidia", "vfio-pci", another driver, or NULL (none bound) */
    char *product; /* owned: "NVIDIA-H100-80GB-HBM3" or "NVIDIA-2330" */
} iso_gpu_device;

typedef struct {
    const char *mode;        /* static: MOAT_GPU_MODE_CONTAINER, _VM or _NONE */
    char *reason;            /* owned, always set: e.g. "2 GPUs on nvidia", "no NVIDIA GPU",
                              * "mixed: 1 on nvidia, 1 on vfio-pci; one GPU mode per node" */
    size_t count;            /* GPUs usable in mode (0 for none) */
    char *product;           /* owned: the first usable GPU's product; NULL when count is 0 */
    char *driver_version;    /* owned: "550.54.15"; NULL when the NVIDIA driver is not loaded */
    size_t dev_nodes;        /* /dev/nvidia<N> device nodes */
    iso_gpu_device *devices; /* owned: every NVIDIA GPU found, in address order */
    size_t n_devices;
} iso_gpu_result;

/* Probes the GPUs under root ("/" or NULL: this host). Fills *out (the caller clears it)
 * and returns 0, whatever it finds; fails only for a NULL out (MOAT_E_INVALID) or out of
 * memory (MOAT_E_NOMEM), *out untouched then. */
int iso_gpu_probe(iso_gpu_result *out, const char *root, moat_error *err);

/* Frees what r owns and zeroes it; accepts NULL. */
void iso_gpu_result_clear(iso_gpu_result *r);

/* The version number in an NVIDIA driver's version text (the first token shaped like
 * 550.54.15 or 535.104), for the fuzzer and the probe. Returns an allocated copy, or NULL
 * when there is none (or out of memory). */
char *iso_gpu_parse_driver_version(const char *text, size_t len);

#endif

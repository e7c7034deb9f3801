#include "isolation/probe/probe.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "libmoat/strbuf.h"
#include "libmoat/names.h"

/* /proc/cpuinfo grows with the number of CPUs (about 1.6 KiB each); 16 MiB is 10,000. */
#define CPUINFO_MAX (16u << 20)
#define PARAM_MAX   4096u

/* ---- the real system calls -------------------------------------------------------------- */

static int host_open(_unused_ void *impl, const char *path)
{
    int fd;
    do
        fd = open(path, O_RDWR | O_CLOEXEC | O_NOCTTY);
    while (fd < 0 && errno == EINTR);
    return fd < 0 ? -errno : fd;
}

static int host_ioctl(_unused_ void *impl, int fd, unsigned long req, unsigned long arg)
{
    int r;
    do
        r = ioctl(fd, req, arg);
    while (r < 0 && errno == EINTR);
    return r < 0 ? -errno : r;
}

static void host_close(_unused_ void *impl, int fd)
{
    close(fd);
}

static const iso_sys host_sys = {
    .open = host_open,
    .ioctl = host_ioctl,
    .close = host_close,
};

const iso_sys *iso_sys_host(void)
{
    return &host_sys;
}

/* ---- helpers shared with the other probe modules ---------------------------------------- */

/* The errno's symbolic name, which is what a reader searches the kernel's documentation
 * for: "EBUSY" says "another hypervisor holds VMX", "Device or resource busy" does not. */
const char *iso_errno_name(int e, char buf[static 24])
{
    static const struct {
        int e;
        const char *name;
    } names[] = {
        {EPERM, "EPERM"},     {ENOENT, "ENOENT"},         {EINTR, "EINTR"},   {EIO, "EIO"},
        {ENXIO, "ENXIO"},     {EBADF, "EBADF"},           {EAGAIN, "EAGAIN"}, {ENOMEM, "ENOMEM"},
        {EACCES, "EACCES"},   {EFAULT, "EFAULT"},         {EBUSY, "EBUSY"},   {ENODEV, "ENODEV"},
        {ENOTDIR, "ENOTDIR"}, {EISDIR, "EISDIR"},         {EINVAL, "EINVAL"}, {ENFILE, "ENFILE"},
        {EMFILE, "EMFILE"},   {ENOTTY, "ENOTTY"},         {EROFS, "EROFS"},   {ENOSYS, "ENOSYS"},
        {ELOOP, "ELOOP"},     {EOPNOTSUPP, "EOPNOTSUPP"}, {EFBIG, "EFBIG"},
    };
    for (size_t i = 0; i < ELEMENTSOF(names); i++)
        if (names[i].e == e)
            return names[i].name;
    snprintf(buf, 24, "errno %d", e);
    return buf;
}

char *iso_strf(const char *fmt, ...)
{
    char *s = NULL;
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&s, fmt, ap);
    va_end(ap);
    return r < 0 ? NULL : s;
}

char *iso_path_join(const char *root, const char *path)
{
    char *s = NULL;
    if (!root || !*root || strcmp(root, "/") == 0)
        return strdup(path);
    size_t n = strlen(root);
    while (n > 1 && root[n - 1] == '/')
        n--;
    return asprintf(&s, "%.*s%s%s", (int)n, root, path[0] == '/' ? "" : "/", path) < 0 ? NULL : s;
}

int iso_read_small(char **ret, const char *root, const char *path, size_t max)
{
    _cleanup_free_ char *full = iso_path_join(root, path);
    if (!full)
        return -ENOMEM;
    _cleanup_close_ int fd = open(full, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return -errno;
    moat_strbuf b = {.max = max + 1};
    char chunk[4096];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            moat_strbuf_free(&b);
            return -e;
        }
        if (n == 0)
            break;
        if (moat_strbuf_append(&b, chunk, (size_t)n) < 0) {
            bool over = b.over_cap;
            moat_strbuf_free(&b);
            return over ? -EFBIG : -ENOMEM;
        }
    }
    size_t len = 0;
    _cleanup_free_ char *buf = moat_strbuf_take_len(&b, &len);
    if (!buf)
        return -ENOMEM;
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == ' '))
        len--;
    buf[len] = '\0';
    *ret = TAKE_PTR(buf);
    return 0;
}

static bool dir_exists(const char *root, const char *path)
{
    _cleanup_free_ char *full = iso_path_join(root, path);
    struct stat st;
    return full && stat(full, &st) == 0 && S_ISDIR(st.st_mode);
}

/* ---- names ------------------------------------------------------------------------------ */

const char *iso_probe_step_name(iso_probe_step_id id)
{
    static const char *const names[ISO_STEP__COUNT] = {
        [ISO_STEP_CPU_FLAGS] = "cpu-flags",       [ISO_STEP_KVM_MODULE] = "kvm-module",
        [ISO_STEP_KVM_NESTED] = "kvm-nested",     [ISO_STEP_KVM_OPEN] = "kvm-open",
        [ISO_STEP_KVM_API] = "kvm-api-version",   [ISO_STEP_KVM_CREATE_VM] = "kvm-create-vm",
        [ISO_STEP_KVM_HARDWARE] = "kvm-hardware", [ISO_STEP_MSHV_OPEN] = "mshv-open",
    };
    return (unsigned)id < ISO_STEP__COUNT ? names[id] : NULL;
}

const char *iso_step_outcome_name(iso_step_outcome o)
{
    switch (o) {
    case ISO_STEP_PASS:
        return "pass";
    case ISO_STEP_FAIL:
        return "fail";
    case ISO_STEP_INFO:
        return "info";
    case ISO_STEP_NOT_RUN:
    default:
        return "not-run";
    }
}

/* ---- cpuinfo ---------------------------------------------------------------------------- */

static bool has_word(const char *s, size_t len, const char *word)
{
    size_t wl = strlen(word);
    for (size_t i = 0; i + wl <= len;) {
        while (i < len && (s[i] == ' ' || s[i] == '\t'))
            i++;
        size_t j = i;
        while (j < len && s[j] != ' ' && s[j] != '\t')
            j++;
        if (j - i == wl && memcmp(s + i, word, wl) == 0)
            return true;
        i = j;
    }
    return false;
}

int iso_probe_parse_cpuinfo(const char **ret_virt, bool *ret_hypervisor, const char *text,
                            size_t len)
{
    /* x86 prints "flags\t\t: fpu vme ..." once per CPU; every CPU has the same flags. */
    for (size_t i = 0; i < len;) {
        const char *line = text + i;
        const char *nl = memchr(line, '\n', len - i);
        size_t ll = nl ? (size_t)(nl - line) : len - i;
        i += ll + 1;
        if (ll < 5 || memcmp(line, "flags", 5) != 0)
            continue;
        size_t k = 5;
        while (k < ll && (line[k] == ' ' || line[k] == '\t'))
            k++;
        if (k >= ll || line[k] != ':')
            continue;
        k++;
        const char *flags = line + k;
        size_t fl = ll - k;
        *ret_virt = has_word(flags, fl, "vmx") ? "vmx" : has_word(flags, fl, "svm") ? "svm" : NULL;
        *ret_hypervisor = has_word(flags, fl, "hypervisor");
        return 0;
    }
    return -1;
}

/* ---- the probe -------------------------------------------------------------------------- */

typedef struct {
    iso_probe_result *r;
    bool nomem;
} run_state;

static void step_set(run_state *st, iso_probe_step_id id, iso_step_outcome o, const char *fmt, ...)
    _printf_(4, 5);

static void step_set(run_state *st, iso_probe_step_id id, iso_step_outcome o, const char *fmt, ...)
{
    iso_probe_step *s = &st->r->steps[id];
    free(s->detail);
    s->detail = NULL;
    s->outcome = o;
    va_list ap;
    va_start(ap, fmt);
    if (vasprintf(&s->detail, fmt, ap) < 0) {
        s->detail = NULL;
        st->nomem = true;
    }
    va_end(ap);
}

/* Why a device did not open: "no <path>" or "<ERRNO> on <path>". */
static void open_failure(run_state *st, iso_probe_step_id id, int e, const char *path)
{
    char buf[24];
    if (e == ENOENT)
        step_set(st, id, ISO_STEP_FAIL, "no %s", path);
    else
        step_set(st, id, ISO_STEP_FAIL, "%s on %s", iso_errno_name(e, buf), path);
}

static void probe_cpu(run_state *st, const char *root)
{
    iso_probe_result *r = st->r;
    _cleanup_free_ char *text = NULL;
    int e = iso_read_small(&text, root, "/proc/cpuinfo", CPUINFO_MAX);
    if (e == -ENOMEM) {
        st->nomem = true;
        return;
    }
    _cleanup_free_ char *path = iso_path_join(root, "/proc/cpuinfo");
    if (!path) {
        st->nomem = true;
        return;
    }
    char buf[24];
    const char *virt = NULL;
    bool hv = false;
    if (e < 0 || !text) { /* (0 always comes with the text) */
        step_set(st, ISO_STEP_CPU_FLAGS, ISO_STEP_FAIL, "cannot read %s: %s", path,
                 iso_errno_name(-e, buf));
        return;
    }
    if (iso_probe_parse_cpuinfo(&virt, &hv, text, strlen(text)) < 0) {
        step_set(st, ISO_STEP_CPU_FLAGS, ISO_STEP_FAIL, "no flags line in %s", path);
        return;
    }
    r->cpu_virt = virt;
    r->cpu_hypervisor = hv ? ISO_TRI_YES : ISO_TRI_NO;
    const char *hvs = hv ? ", hypervisor bit set (a VM)" : "";
    if (virt)
        step_set(st, ISO_STEP_CPU_FLAGS, ISO_STEP_PASS, "%s%s", virt, hvs);
    else
        step_set(st, ISO_STEP_CPU_FLAGS, ISO_STEP_FAIL, "no vmx/svm%s", hvs);
}

static void probe_module(run_state *st, const char *root)
{
    iso_probe_result *r = st->r;
    bool pvm = dir_exists(root, "/sys/module/kvm_pvm");
    bool intel = dir_exists(root, "/sys/module/kvm_intel");
    bool amd = dir_exists(root, "/sys/module/kvm_amd");
    /* x86 KVM takes one vendor module at a time, so a loaded kvm_pvm is what /dev/kvm is;
     * a kvm_intel next to it is a built-in module's parameters, not a second KVM. */
    if (pvm) {
        r->kvm_module = "kvm_pvm";
        step_set(st, ISO_STEP_KVM_MODULE, ISO_STEP_FAIL, "kvm_pvm%s",
                 intel ? " (kvm_intel present too)"
                 : amd ? " (kvm_amd present too)"
                       : "");
    } else if (intel || amd) {
        r->kvm_module = intel ? "kvm_intel" : "kvm_amd";
        step_set(st, ISO_STEP_KVM_MODULE, ISO_STEP_PASS, "%s", r->kvm_module);
    } else {
        step_set(st, ISO_STEP_KVM_MODULE, ISO_STEP_FAIL,
                 "none of kvm_intel, kvm_amd, kvm_pvm in /sys/module");
        return;
    }
    if (pvm)
        return; /* no nested parameter: PVM guests cannot run VMs themselves */

    _cleanup_free_ char *param = NULL, *rel = NULL;
    if (asprintf(&rel, "/sys/module/%s/parameters/nested", r->kvm_module) < 0) {
        rel = NULL;
        st->nomem = true;
        return;
    }
    int e = iso_read_small(&param, root, rel, PARAM_MAX);
    char buf[24];
    if (e == -ENOMEM)
        st->nomem = true;
    else if (e < 0 || !param) /* (0 always comes with the value) */
        step_set(st, ISO_STEP_KVM_NESTED, ISO_STEP_INFO, "%s nested unreadable: %s", r->kvm_module,
                 iso_errno_name(-e, buf));
    else {
        bool yes = strcmp(param, "Y") == 0 || strcmp(param, "1") == 0;
        bool no = strcmp(param, "N") == 0 || strcmp(param, "0") == 0;
        r->nested = yes ? ISO_TRI_YES : no ? ISO_TRI_NO : ISO_TRI_UNKNOWN;
        /* Informational: nested=N only stops VMs inside this node's VMs, not Kata here. */
        step_set(st, ISO_STEP_KVM_NESTED, ISO_STEP_INFO, "%s nested=%.16s", r->kvm_module, param);
    }
}

/* The KVM device's steps. Returns true when it is usable for Kata; else the failed step
 * holds why. */
static bool probe_kvm(run_state *st, const iso_sys *sys, const char *path)
{
    iso_probe_result *r = st->r;
    char buf[24];

    int fd = sys->open(sys->impl, path);
    if (fd < 0) {
        open_failure(st, ISO_STEP_KVM_OPEN, -fd, path);
        return false;
    }
    step_set(st, ISO_STEP_KVM_OPEN, ISO_STEP_PASS, "%s", path);

    bool vm_ok = false;
    int version = sys->ioctl(sys->impl, fd, KVM_GET_API_VERSION, 0);
    if (version < 0)
        step_set(st, ISO_STEP_KVM_API, ISO_STEP_FAIL, "KVM_GET_API_VERSION: %s",
                 iso_errno_name(-version, buf));
    else if (version != KVM_API_VERSION) {
        r->kvm_api_version = version;
        step_set(st, ISO_STEP_KVM_API, ISO_STEP_FAIL, "KVM_GET_API_VERSION returned %d, want %d",
                 version, KVM_API_VERSION);
    } else {
        r->kvm_api_version = version;
        step_set(st, ISO_STEP_KVM_API, ISO_STEP_PASS, "%d", version);
        /* Type 0: the architecture's default VM. Creating one is what fails when another
         * hypervisor (VirtualBox, a nested host's) holds the CPU's virtualization. */
        int vm = sys->ioctl(sys->impl, fd, KVM_CREATE_VM, 0);
        if (vm < 0)
            step_set(st, ISO_STEP_KVM_CREATE_VM, ISO_STEP_FAIL, "KVM_CREATE_VM: %s",
                     iso_errno_name(-vm, buf));
        else {
            sys->close(sys->impl, vm);
            step_set(st, ISO_STEP_KVM_CREATE_VM, ISO_STEP_PASS, "VM created and closed");
            vm_ok = true;
        }
    }
    sys->close(sys->impl, fd);
    if (!vm_ok)
        return false;

    /* /dev/kvm works. Whether it is hardware virtualization decides whether Kata's
     * hypervisors (and gVisor's KVM platform) can use it. */
    bool pvm = r->kvm_module && strcmp(r->kvm_module, "kvm_pvm") == 0;
    bool vendor = r->kvm_module && !pvm;
    r->found = pvm ? ISO_FOUND_KVM_PVM : MOAT_HYPERVISOR_KVM;
    if (pvm) {
        if (r->cpu_virt)
            step_set(st, ISO_STEP_KVM_HARDWARE, ISO_STEP_FAIL,
                     "kvm is kvm_pvm (software page tables, not %s): Kata needs hardware "
                     "virtualization",
                     r->cpu_virt);
        else
            step_set(st, ISO_STEP_KVM_HARDWARE, ISO_STEP_FAIL,
                     "kvm is kvm_pvm (no vmx/svm): Kata needs hardware virtualization");
        return false;
    }
    if (r->cpu_hypervisor != ISO_TRI_UNKNOWN && !r->cpu_virt) {
        step_set(st, ISO_STEP_KVM_HARDWARE, ISO_STEP_FAIL,
                 "/dev/kvm answers but the CPU has no vmx/svm: Kata needs hardware "
                 "virtualization");
        return false;
    }
    if (!r->cpu_virt && !vendor) {
        step_set(st, ISO_STEP_KVM_HARDWARE, ISO_STEP_FAIL,
                 "cannot prove /dev/kvm is hardware virtualization: no CPU flags and no "
                 "kvm_intel or kvm_amd module");
        return false;
    }
    if (r->cpu_virt && vendor)
        step_set(st, ISO_STEP_KVM_HARDWARE, ISO_STEP_PASS, "%s (%s)", r->cpu_virt, r->kvm_module);
    else if (r->cpu_virt)
        step_set(st, ISO_STEP_KVM_HARDWARE, ISO_STEP_PASS, "%s (module not visible)", r->cpu_virt);
    else
        step_set(st, ISO_STEP_KVM_HARDWARE, ISO_STEP_PASS, "%s (CPU flags not visible)",
                 r->kvm_module);
    return true;
}

/* The detail of the step that decided KVM was not usable. */
static const char *kvm_failure(const iso_probe_result *r)
{
    static const iso_probe_step_id order[] = {ISO_STEP_KVM_OPEN, ISO_STEP_KVM_API,
                                              ISO_STEP_KVM_CREATE_VM, ISO_STEP_KVM_HARDWARE};
    for (size_t i = 0; i < ELEMENTSOF(order); i++)
        if (r->steps[order[i]].outcome == ISO_STEP_FAIL)
            return r->steps[order[i]].detail;
    return NULL;
}

int iso_probe_run(iso_probe_result *out, const iso_sys *sys, const iso_probe_paths *paths,
                  moat_error *err)
{
    if (!sys || !out)
        return moat_error_set(err, MOAT_E_INVALID, "host probe: no system calls or result");
    static const iso_probe_paths defaults = {0};
    if (!paths)
        paths = &defaults;

    iso_probe_result r = {
        .found = ISO_FOUND_NONE,
        .cpu_hypervisor = ISO_TRI_UNKNOWN,
        .nested = ISO_TRI_UNKNOWN,
        .kvm_api_version = -1,
    };
    run_state st = {.r = &r};
    _cleanup_free_ char *kvm_path =
        paths->kvm_path ? strdup(paths->kvm_path) : iso_path_join(paths->root, ISO_PROBE_KVM_PATH);
    _cleanup_free_ char *mshv_path = paths->mshv_path
                                         ? strdup(paths->mshv_path)
                                         : iso_path_join(paths->root, ISO_PROBE_MSHV_PATH);
    if (!kvm_path || !mshv_path)
        goto nomem;

    probe_cpu(&st, paths->root);
    probe_module(&st, paths->root);
    if (st.nomem)
        goto nomem;

    if (probe_kvm(&st, sys, kvm_path)) {
        r.usable = true;
        r.hypervisor = strdup(MOAT_HYPERVISOR_KVM);
        r.reason = strdup(MOAT_HYPERVISOR_KVM " usable");
    } else if (!st.nomem) {
        /* Kata on Microsoft's hypervisor needs only the device: Cloud Hypervisor asks it for
         * everything else. */
        int fd = sys->open(sys->impl, mshv_path);
        if (fd >= 0) {
            sys->close(sys->impl, fd);
            step_set(&st, ISO_STEP_MSHV_OPEN, ISO_STEP_PASS, "%s", mshv_path);
            r.usable = true;
            r.found = MOAT_HYPERVISOR_MSHV;
            r.hypervisor = strdup(MOAT_HYPERVISOR_MSHV);
            r.reason = strdup(MOAT_HYPERVISOR_MSHV " usable");
        } else {
            open_failure(&st, ISO_STEP_MSHV_OPEN, -fd, mshv_path);
            const char *kvm_why = kvm_failure(&r);
            const char *mshv_why = r.steps[ISO_STEP_MSHV_OPEN].detail;
            if (!st.nomem && kvm_why && mshv_why &&
                asprintf(&r.reason, "%s and %s", kvm_why, mshv_why) < 0)
                r.reason = NULL;
        }
    }
    if (st.nomem || !r.reason || (r.usable && !r.hypervisor))
        goto nomem;
    *out = r;
    return 0;

nomem:
    iso_probe_result_clear(&r);
    return moat_error_set(err, MOAT_E_NOMEM, "host probe: out of memory");
}

int iso_probe_assume(iso_probe_result *out, const char *kind, const char *why, moat_error *err)
{
    if (!out || !kind)
        return moat_error_set(err, MOAT_E_INVALID, "host probe: no result or kind");
    bool kvm = strcmp(kind, MOAT_HYPERVISOR_KVM) == 0;
    bool mshv = strcmp(kind, MOAT_HYPERVISOR_MSHV) == 0;
    if (!kvm && !mshv && strcmp(kind, MOAT_HYPERVISOR_NONE) != 0)
        return moat_error_set(err, MOAT_E_INVALID,
                              "host probe: \"%s\" is not " MOAT_HYPERVISOR_KVM
                              ", " MOAT_HYPERVISOR_MSHV " or " MOAT_HYPERVISOR_NONE,
                              kind);
    iso_probe_result r = {
        .usable = kvm || mshv,
        .found = kvm    ? MOAT_HYPERVISOR_KVM
                 : mshv ? MOAT_HYPERVISOR_MSHV
                        : ISO_FOUND_NONE,
        .cpu_hypervisor = ISO_TRI_UNKNOWN,
        .nested = ISO_TRI_UNKNOWN,
        .kvm_api_version = -1,
    };
    if (r.usable && !(r.hypervisor = strdup(kind)))
        return moat_error_set(err, MOAT_E_NOMEM, "host probe: out of memory");
    if (asprintf(&r.reason, "%s assumed%s%s", r.usable ? kind : "no hypervisor", why ? " " : "",
                 why ? why : "") < 0) {
        free(r.hypervisor);
        return moat_error_set(err, MOAT_E_NOMEM, "host probe: out of memory");
    }
    *out = r;
    return 0;
}

/* ---- the real probe --------------------------------------------------------------------- */

static int host_probe(void *impl, iso_probe_result *out, moat_error *err)
{
    return iso_probe_run(out, &host_sys, impl, err);
}

static const iso_probe_paths default_paths = {0};

static const iso_probe_ops host_ops = {
    .probe = host_probe,
    .impl = (void *)&default_paths,
};

const iso_probe_ops *iso_probe_host(void)
{
    return &host_ops;
}

iso_probe_ops iso_probe_host_at(const iso_probe_paths *paths)
{
    return (iso_probe_ops){.probe = host_probe, .impl = (void *)paths};
}

void iso_probe_result_clear(iso_probe_result *r)
{
    if (!r)
        return;
    free(r->hypervisor);
    free(r->reason);
    for (size_t i = 0; i < ISO_STEP__COUNT; i++)
        free(r->steps[i].detail);
    *r = (iso_probe_result){0};
}

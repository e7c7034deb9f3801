#include "isolation/probe/report.h"

#include <stdio.h>
#include <string.h>

#include "libmoat/names.h"

int iso_report_collect(iso_report *out, const iso_report_config *cfg, const iso_report_backends *b,
                       moat_error *err)
{
    if (!out)
        return moat_error_set(err, MOAT_E_INVALID, "host report: no result");
    static const iso_report_config no_cfg = {0};
    static const iso_report_backends no_b = {0};
    cfg = cfg ? cfg : &no_cfg;
    b = b ? b : &no_b;

    iso_report r = {0};
    if (iso_probe_run(&r.hypervisor, b->sys ? b->sys : iso_sys_host(), &cfg->probe, err) < 0)
        goto fail;
    if (cfg->no_libvirt) {
        r.libvirt = (iso_libvirt_result){
            .kvm = ISO_TRI_UNKNOWN,
            .qemu = ISO_TRI_UNKNOWN,
            .agrees = ISO_TRI_UNKNOWN,
            .status = strdup("not asked"),
            .verdict = strdup("libvirt: not asked"),
        };
        if (!r.libvirt.status || !r.libvirt.verdict) {
            moat_error_set(err, MOAT_E_NOMEM, "host report: out of memory");
            goto fail;
        }
    } else if (iso_libvirt_probe(&r.libvirt, b->libvirt ? b->libvirt : iso_libvirt_host(),
                                 cfg->libvirt_uri, &r.hypervisor, err) < 0)
        goto fail;
    if (iso_gpu_probe(&r.gpu, cfg->probe.root, err) < 0)
        goto fail;
    if (iso_runtimes_probe(&r.runtimes, &cfg->runtimes, b->exec, &r.hypervisor, err) < 0)
        goto fail;
    *out = r;
    return 0;
fail:
    iso_report_clear(&r);
    return -1;
}

void iso_report_clear(iso_report *r)
{
    if (!r)
        return;
    iso_probe_result_clear(&r->hypervisor);
    iso_libvirt_result_clear(&r->libvirt);
    iso_gpu_result_clear(&r->gpu);
    iso_runtimes_result_clear(&r->runtimes);
}

const char *iso_report_hypervisor_label(const iso_report *r)
{
    if (!r || !r->hypervisor.usable || !r->hypervisor.hypervisor)
        return MOAT_HYPERVISOR_NONE;
    return strcmp(r->hypervisor.hypervisor, MOAT_HYPERVISOR_MSHV) == 0 ? MOAT_HYPERVISOR_MSHV
                                                                       : MOAT_HYPERVISOR_KVM;
}

const char *iso_report_gpu_mode(const iso_report *r)
{
    return r && r->gpu.mode ? r->gpu.mode : MOAT_GPU_MODE_NONE;
}

/* ---- JSON ------------------------------------------------------------------------------- */

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

static json_t *tri(iso_tri t)
{
    return t == ISO_TRI_UNKNOWN ? json_null() : json_boolean(t == ISO_TRI_YES);
}

/* json_object_set_new that remembers a failure (a NULL value or no memory). */
static void put(json_t *o, const char *key, json_t *v, bool *bad)
{
    if (!v || !o || json_object_set_new(o, key, v) < 0)
        *bad = true;
}

static json_t *hypervisor_json(const iso_probe_result *h, bool *bad)
{
    json_t *o = json_object();
    put(o, "usable", json_boolean(h->usable), bad);
    put(o, "kind", json_string(h->usable && h->hypervisor ? h->hypervisor : MOAT_HYPERVISOR_NONE),
        bad);
    put(o, "found", json_string(h->found ? h->found : ISO_FOUND_NONE), bad);
    put(o, "reason", str_or_null(h->reason), bad);
    json_t *cpu = json_object();
    put(cpu, "virtualization", str_or_null(h->cpu_virt), bad);
    put(cpu, "hypervisor_bit", tri(h->cpu_hypervisor), bad);
    put(o, "cpu", cpu, bad);
    put(o, "kvm_module", str_or_null(h->kvm_module), bad);
    put(o, "nested", tri(h->nested), bad);
    put(o, "kvm_api_version",
        h->kvm_api_version >= 0 ? json_integer(h->kvm_api_version) : json_null(), bad);
    json_t *steps = json_array();
    for (int i = 0; i < ISO_STEP__COUNT && steps; i++) {
        const iso_probe_step *s = &h->steps[i];
        json_t *step = json_object();
        put(step, "step", json_string(iso_probe_step_name(i)), bad);
        put(step, "outcome", json_string(iso_step_outcome_name(s->outcome)), bad);
        put(step, "detail", str_or_null(s->detail), bad);
        if (!step || json_array_append_new(steps, step) < 0)
            *bad = true;
    }
    put(o, "steps", steps, bad);
    return o;
}

/* json_pack's result, a failure remembered. */
static json_t *packed(json_t *o, bool *bad)
{
    if (!o)
        *bad = true;
    return o;
}

static json_t *libvirt_json(const iso_libvirt_result *l, bool *bad)
{
    return packed(json_pack("{s:b, s:s?, s:o, s:s?, s:o, s:s?, s:o, s:s?}", "running", l->running,
                            "status", l->status, "kvm", tri(l->kvm), "kvm_message", l->kvm_msg,
                            "qemu", tri(l->qemu), "qemu_message", l->qemu_msg, "agrees",
                            tri(l->agrees), "verdict", l->verdict),
                  bad);
}

static json_t *gpu_json(const iso_gpu_result *g, bool *bad)
{
    json_t *o = json_object();
    put(o, "mode", json_string(g->mode ? g->mode : MOAT_GPU_MODE_NONE), bad);
    put(o, "reason", str_or_null(g->reason), bad);
    put(o, "count", json_integer((json_int_t)g->count), bad);
    put(o, "product", str_or_null(g->product), bad);
    put(o, "driver_version", str_or_null(g->driver_version), bad);
    put(o, "dev_nodes", json_integer((json_int_t)g->dev_nodes), bad);
    json_t *devs = json_array();
    for (size_t i = 0; i < g->n_devices && devs; i++) {
        const iso_gpu_device *d = &g->devices[i];
        json_t *dev = packed(json_pack("{s:s?, s:s?, s:s?, s:s?}", "address", d->address, "device",
                                       d->device, "driver", d->driver, "product", d->product),
                             bad);
        if (!dev || json_array_append_new(devs, dev) < 0)
            *bad = true;
    }
    put(o, "devices", devs, bad);
    return o;
}

static json_t *binary_json(const iso_binary *b, bool *bad)
{
    return packed(json_pack("{s:s?, s:b, s:s?, s:s?}", "path", b->path, "found", b->found,
                            "version", b->version, "detail", b->detail),
                  bad);
}

static json_t *runtimes_json(const iso_runtimes_result *rt, bool *bad)
{
    const iso_gvisor_result *g = &rt->gvisor;
    const iso_kata_result *k = &rt->kata;
    json_t *gv = json_object();
    put(gv, "available", json_boolean(g->available), bad);
    put(gv, "reason", str_or_null(g->reason), bad);
    put(gv, "version", str_or_null(g->runsc.version), bad);
    json_t *plats = json_array();
    for (size_t i = 0; i < g->n_platforms && plats; i++)
        if (json_array_append_new(plats, json_string(g->platforms[i])) < 0)
            *bad = true;
    put(gv, "platforms", plats, bad);
    put(gv, "platform", str_or_null(g->platform), bad);
    put(gv, "runsc", binary_json(&g->runsc, bad), bad);
    put(gv, "shim", binary_json(&g->shim, bad), bad);

    json_t *ka = json_object();
    put(ka, "installed", json_boolean(k->installed), bad);
    put(ka, "available", json_boolean(k->available), bad);
    put(ka, "reason", str_or_null(k->reason), bad);
    put(ka, "version", str_or_null(k->shim.version), bad);
    put(ka, "shim", binary_json(&k->shim, bad), bad);
    json_t *configs = json_object();
    for (size_t i = 0; i < ISO_KATA_CONFIG__COUNT; i++) {
        const iso_kata_config *c = &k->configs[i];
        if (!c->name)
            continue;
        json_t *cj = json_object();
        put(cj, "path", str_or_null(c->path), bad);
        put(cj, "present", json_boolean(c->present), bad);
        put(configs, c->name, cj, bad);
    }
    put(ka, "configs", configs, bad);

    json_t *o = json_object();
    put(o, MOAT_RUNTIME_GVISOR, gv, bad);
    put(o, MOAT_RUNTIME_KATA, ka, bad);
    return o;
}

json_t *iso_report_to_json(const iso_report *r)
{
    if (!r)
        return NULL;
    bool bad = false;
    json_t *o = json_object();
    put(o, "hypervisor", hypervisor_json(&r->hypervisor, &bad), &bad);
    put(o, "libvirt", libvirt_json(&r->libvirt, &bad), &bad);
    put(o, "gpu", gpu_json(&r->gpu, &bad), &bad);
    put(o, "runtimes", runtimes_json(&r->runtimes, &bad), &bad);
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* ---- text ------------------------------------------------------------------------------- */

static const char *yes_no(iso_tri t)
{
    return t == ISO_TRI_YES ? "yes" : t == ISO_TRI_NO ? "no" : "unknown";
}

char *iso_report_to_text(const iso_report *r)
{
    if (!r)
        return NULL;
    const iso_probe_result *h = &r->hypervisor;
    const iso_libvirt_result *l = &r->libvirt;
    const iso_gpu_result *g = &r->gpu;
    const iso_gvisor_result *gv = &r->runtimes.gvisor;
    const iso_kata_result *k = &r->runtimes.kata;
    char *s = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&s, &len);
    if (!f)
        return NULL;

    fprintf(f, "hypervisor: %s for a VM sandbox (kind %s, found %s)\n",
            h->usable ? "usable" : "NOT usable", iso_report_hypervisor_label(r),
            h->found ? h->found : ISO_FOUND_NONE);
    fprintf(f, "  reason: %s\n", h->reason ? h->reason : "-");
    for (int i = 0; i < ISO_STEP__COUNT; i++)
        if (h->steps[i].outcome != ISO_STEP_NOT_RUN)
            fprintf(f, "  %-16s %-5s %s\n", iso_probe_step_name(i),
                    iso_step_outcome_name(h->steps[i].outcome),
                    h->steps[i].detail ? h->steps[i].detail : "");
    fprintf(f, "%s\n", l->verdict ? l->verdict : "libvirt: -");
    if (l->running) {
        fprintf(f, "  domain type kvm: %s%s%s\n", yes_no(l->kvm), l->kvm_msg ? " - " : "",
                l->kvm_msg ? l->kvm_msg : "");
        fprintf(f, "  domain type qemu: %s%s%s\n", yes_no(l->qemu), l->qemu_msg ? " - " : "",
                l->qemu_msg ? l->qemu_msg : "");
    } else if (l->status && strcmp(l->status, "not running") != 0) {
        fprintf(f, "  %s\n", l->status);
    }
    fprintf(f, "gpu: mode %s, %zu usable (%s)\n", iso_report_gpu_mode(r), g->count,
            g->reason ? g->reason : "-");
    if (g->product || g->driver_version)
        fprintf(f, "  product %s, driver %s\n", g->product ? g->product : "-",
                g->driver_version ? g->driver_version : "-");
    for (size_t i = 0; i < g->n_devices; i++)
        fprintf(f, "  %s %s on %s\n", g->devices[i].address, g->devices[i].product,
                g->devices[i].driver ? g->devices[i].driver : "no driver");
    fprintf(f, "gvisor: %s (%s)\n", gv->available ? "available" : "NOT available",
            gv->reason ? gv->reason : "-");
    fprintf(f, "  platform %s (supported:", gv->platform ? gv->platform : "-");
    for (size_t i = 0; i < gv->n_platforms; i++)
        fprintf(f, " %s", gv->platforms[i]);
    fprintf(f, ")\n");
    const iso_binary *bins[] = {&gv->runsc, &gv->shim, &k->shim};
    static const char *const labels[] = {"gvisor runsc", "gvisor shim", "kata shim"};
    for (size_t i = 0; i < ELEMENTSOF(bins); i++)
        fprintf(f, "  %s: %s%s%s (%s)\n", labels[i], bins[i]->path ? bins[i]->path : "-",
                bins[i]->version ? " " : "", bins[i]->version ? bins[i]->version : "",
                bins[i]->detail ? bins[i]->detail : "-");
    fprintf(f, "kata: %s, %s (%s)\n", k->installed ? "installed" : "not installed",
            k->available ? "available" : "NOT available", k->reason ? k->reason : "-");
    for (size_t i = 0; i < ISO_KATA_CONFIG__COUNT; i++)
        if (k->configs[i].path)
            fprintf(f, "  config %s: %s%s\n", k->configs[i].name, k->configs[i].path,
                    k->configs[i].present ? "" : " (absent)");
    if (fclose(f) != 0) {
        free(s);
        return NULL;
    }
    return s;
}

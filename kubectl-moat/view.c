#include "view.h"

#include <inttypes.h>
#include <string.h>

#include "libmoat/kobj.h"
#include "libmoat/macro.h"
#include "libmoat/units.h"

static const char *str(const json_t *obj, const char *path, const char *def)
{
    const char *s = kobj_str(obj, path);
    return s ? s : def;
}

void sandbox_view_read(sandbox_view *v, const json_t *sb)
{
    int64_t code;
    *v = (sandbox_view){
        .name = str(sb, "metadata.name", ""),
        .phase = str(sb, "status.phase", ""),
        .mode = str(sb, "spec.mode", "Run"),
        .isolation = str(sb, "spec.isolation", "Auto"),
        .runtime = str(sb, "status.isolation.runtime", ""),
        .handler = str(sb, "status.isolation.handler", ""),
        .why = str(sb, "status.isolation.reason", ""),
        .verified = kobj_bool(sb, "status.isolation.verified", false),
        .node = str(sb, "status.nodeName", ""),
        .pod = str(sb, "status.podName", ""),
        .message = str(sb, "status.message", ""),
        .finished_reason = "",
        .scheduled_message = "",
        .created = moat_rfc3339_parse(kobj_str(sb, "metadata.creationTimestamp")),
        .last_activity = moat_rfc3339_parse(kobj_str(sb, "status.lastActivityTime")),
    };
    if (kobj_int(sb, "status.exitCode", &code) && code >= 0 && code <= 255) {
        v->has_exit_code = true;
        v->exit_code = (int)code;
    }
    const json_t *c = kobj_condition(sb, "status.conditions", "Ready");
    v->ready = c && strcmp(str(c, "status", ""), "True") == 0;
    c = kobj_condition(sb, "status.conditions", "Finished");
    if (c && strcmp(str(c, "status", ""), "True") == 0)
        v->finished_reason = str(c, "reason", "");
    c = kobj_condition(sb, "status.conditions", "Scheduled");
    if (c && strcmp(str(c, "status", ""), "False") == 0) {
        v->no_hypervisor = strcmp(str(c, "reason", ""), "NoHypervisor") == 0;
        v->scheduled_message = str(c, "message", "");
    }
}

bool sandbox_view_final(const sandbox_view *v)
{
    return strcmp(v->phase, "Succeeded") == 0 || strcmp(v->phase, "Failed") == 0 ||
           strcmp(v->phase, "Expired") == 0;
}

void view_age(char *buf, size_t size, int64_t s)
{
    if (s < 0)
        snprintf(buf, size, "<unknown>");
    else if (s < 120)
        snprintf(buf, size, "%" PRId64 "s", s);
    else if (s < 3600 * 2)
        snprintf(buf, size, "%" PRId64 "m", s / 60);
    else if (s < 86400 * 2)
        snprintf(buf, size, "%" PRId64 "h", s / 3600);
    else
        snprintf(buf, size, "%" PRId64 "d", s / 86400);
}

static void since(char *buf, size_t size, int64_t t, int64_t now)
{
    if (t < 0)
        snprintf(buf, size, "-");
    else
        view_age(buf, size, now >= t ? now - t : 0);
}

void view_print_table(FILE *f, const json_t *items, int64_t now)
{
    size_t i;
    const json_t *sb;
    fprintf(f, "%-30s %-10s %-8s %-10s %-16s %-6s %s\n", "NAME", "PHASE", "MODE", "ISOLATION",
            "NODE", "AGE", "IDLE");
    json_array_foreach (items, i, sb) {
        sandbox_view v;
        char age[32], idle[32];
        sandbox_view_read(&v, sb);
        since(age, sizeof(age), v.created, now);
        /* idle: only of a running Session, whose last activity is what ends it */
        if (strcmp(v.mode, "Session") == 0 && !sandbox_view_final(&v))
            since(idle, sizeof(idle), v.last_activity, now);
        else
            snprintf(idle, sizeof(idle), "-");
        fprintf(f, "%-30s %-10s %-8s %-10s %-16s %-6s %s\n", v.name, *v.phase ? v.phase : "-",
                v.mode, *v.runtime ? v.runtime : "-", *v.node ? v.node : "-", age, idle);
    }
}

void view_print_detail(FILE *f, const sandbox_view *v, int64_t now)
{
    char age[32], idle[32];
    since(age, sizeof(age), v->created, now);
    since(idle, sizeof(idle), v->last_activity, now);
    fprintf(f, "Name:       %s\n", v->name);
    fprintf(f, "Phase:      %s%s%s%s\n", *v->phase ? v->phase : "-",
            *v->finished_reason ? " (" : "", v->finished_reason, *v->finished_reason ? ")" : "");
    fprintf(f, "Mode:       %s\n", v->mode);
    fprintf(f, "Asked:      isolation %s\n", v->isolation);
    if (*v->runtime)
        fprintf(f, "Isolation:  %s (%s)%s\n", v->runtime, v->handler,
                v->verified ? "" : ", not yet confirmed by the node");
    else
        fprintf(f, "Isolation:  - (not reported yet)\n");
    if (*v->why)
        fprintf(f, "Why:        %s\n", v->why);
    if (v->no_hypervisor)
        fprintf(f, "Placement:  isolation VM: no node has a usable hypervisor: %s\n",
                v->scheduled_message);
    fprintf(f, "Node:       %s\n", *v->node ? v->node : "-");
    fprintf(f, "Pod:        %s\n", *v->pod ? v->pod : "-");
    fprintf(f, "Age:        %s\n", age);
    if (strcmp(v->mode, "Session") == 0)
        fprintf(f, "Idle:       %s\n", sandbox_view_final(v) ? "-" : idle);
    if (v->has_exit_code)
        fprintf(f, "Exit code:  %d\n", v->exit_code);
    if (*v->message)
        fprintf(f, "Message:    %s\n", v->message);
}

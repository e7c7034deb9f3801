/* What `kubectl moat ls` and `get` show of a Sandbox, read from the object the API server
 * returned (any JSON: a field that is missing or of the wrong type reads as absent). */
#ifndef MOAT_PLUGIN_VIEW_H
#define MOAT_PLUGIN_VIEW_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* The strings point into the object, which must outlive the view; never NULL ("" when
 * absent). Times are seconds since the epoch, -1 when absent or malformed. */
typedef struct {
    const char *name;
    const char *phase;     /* "" before the operator's first status */
    const char *mode;      /* spec.mode, "Run" when unset */
    const char *isolation; /* spec.isolation asked: Auto, VM, GVisor */
    const char *runtime;   /* status.isolation.runtime: what really ran ("" until reported) */
    const char *handler;
    const char *why; /* status.isolation.reason */
    bool verified;   /* the runtime's own record, not the operator's guess */
    const char *node;
    const char *pod;             /* status.podName: the only way to the Pod */
    const char *message;         /* status.message */
    const char *finished_reason; /* the Finished condition's reason once True */
    bool ready;                  /* the Ready condition is True */
    bool no_hypervisor; /* Scheduled is False for NoHypervisor: isolation VM cannot be placed */
    const char *scheduled_message;
    bool has_exit_code;
    int exit_code;
    int64_t created, last_activity;
} sandbox_view;

void sandbox_view_read(sandbox_view *v, const json_t *sandbox);

/* True once the Sandbox has ended (Succeeded, Failed, Expired). */
bool sandbox_view_final(const sandbox_view *v);

/* "3s", "5m", "2h", "4d" (kubectl's short age) of seconds; "<unknown>" when negative. */
void view_age(char *buf, size_t size, int64_t seconds);

/* The table `ls` prints: a header, then one line per Sandbox of `list` (a List's items),
 * times relative to now. */
void view_print_table(FILE *f, const json_t *items, int64_t now);

/* `get`: every field of the view, one per line ("Isolation:  gvisor (runsc-nonet), ..."). */
void view_print_detail(FILE *f, const sandbox_view *v, int64_t now);

#endif

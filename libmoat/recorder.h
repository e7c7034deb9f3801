/* Recording Kubernetes Events about objects (core/v1 Events, which `kubectl describe`
 * shows), without blocking the caller.
 *
 * kube_recorder_event() queues and returns at once; a thread of the recorder posts. A
 * repeat of the same event (same object, type, reason and message) within ten minutes
 * updates the existing Event's count and lastTimestamp instead of creating another. Each
 * object may emit a burst of 25 events, then one per 5 minutes (client-go's spam filter);
 * events over that, or over the queue's cap, are dropped and counted. */
#ifndef MOAT_RECORDER_H
#define MOAT_RECORDER_H

#include <jansson.h>
#include <stdint.h>

#include "clock.h"
#include "error.h"
#include "kube.h"
#include "macro.h"

#define KUBE_RECORDER_QUEUE_MAX 1000

typedef struct kube_recorder kube_recorder;

/* component: the reporting controller ("moat-operator"); host: its node or pod name. The
 * client is borrowed. */
int kube_recorder_new(kube_recorder **out, kube_client *client, const char *component,
                      const char *host, moat_error *err);

/* Records an event about obj (an API object with apiVersion, kind and metadata; the fields
 * needed are copied). type is "Normal" or "Warning"; reason is UpperCamelCase. */
void kube_recorder_event(kube_recorder *r, const json_t *obj, const char *type, const char *reason,
                         const char *fmt, ...) _printf_(5, 6);

/* The clock of the spam filter's refill (moat_clock_system() until set; a test's fake
 * clock). Set it before the first event; the clock is borrowed and must outlive r. */
void kube_recorder_set_clock(kube_recorder *r, const moat_clock *clock);

/* Posts what is queued (waiting at most timeout_ns), stops the thread and frees. */
void kube_recorder_free(kube_recorder *r, int64_t timeout_ns);

#endif

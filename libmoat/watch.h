/* Decoding a Kubernetes watch stream: a byte stream of JSON lines, each
 * {"type": "ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR", "object": {...}}.
 *
 * Bytes arrive in any split; the decoder keeps the incomplete tail of a line and hands out
 * each complete event. A line longer than the decoder's cap, a line that is not JSON, or an
 * event without a known type or an object is an error for that watch (the caller ends the
 * watch and resumes or relists); it never crashes and never reads past a line. */
#ifndef MOAT_WATCH_H
#define MOAT_WATCH_H

#include <jansson.h>
#include <stddef.h>

#include "error.h"

/* The default cap on one event line. A Pod is a few KiB; a large CRD object well under
 * 1 MiB; the API server limits objects to about 1.5 MiB in etcd. */
#define KUBE_WATCH_MAX_LINE ((size_t)16 << 20)

typedef enum {
    KUBE_EVENT_ADDED,
    KUBE_EVENT_MODIFIED,
    KUBE_EVENT_DELETED,
    KUBE_EVENT_BOOKMARK,
    KUBE_EVENT_ERROR, /* object is a Status; 410 Expired means "relist" */
} kube_event_type;

const char *kube_event_type_name(kube_event_type t);

/* Called for each event, with the event's object (borrowed: incref to keep it). A return
 * value < 0 stops decoding; feed then returns that value without setting err. */
typedef int (*kube_watch_event_cb)(void *user, kube_event_type type, json_t *object);

typedef struct kube_watch_decoder kube_watch_decoder;

/* max_line 0 means KUBE_WATCH_MAX_LINE. */
int kube_watch_decoder_new(kube_watch_decoder **out, size_t max_line, moat_error *err);

/* Feeds len bytes. Returns 0, a callback's negative value, or -1 with err set for a bad or
 * oversized line; after an error, call kube_watch_decoder_reset before reuse. */
int kube_watch_decoder_feed(kube_watch_decoder *d, const char *data, size_t len,
                            kube_watch_event_cb cb, void *user, moat_error *err);

/* Bytes of an incomplete line held (a stream that ends with some is cut mid-line). */
size_t kube_watch_decoder_pending(const kube_watch_decoder *d);

void kube_watch_decoder_reset(kube_watch_decoder *d);
void kube_watch_decoder_free(kube_watch_decoder *d);

#endif

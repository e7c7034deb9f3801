/* Informers: a cache of one kind of object kept equal to the API server's state by
 * list-then-watch, with event handlers and indexes.
 *
 * All informers of a kube_loop share one thread and one libcurl multi handle: many watches
 * run concurrently without a thread per watch. Each informer lists (following `continue`),
 * then watches from the list's resourceVersion with bookmarks and a bounded server-side
 * timeout, and resumes from the last resourceVersion it saw when the stream ends, is cut
 * (mid-line included) or stalls (no byte for stall_timeout_s). On 410 Gone, or an ERROR
 * event, it lists again and hands its handlers exactly the changes it missed (adds, updates
 * and deletes computed against the cache), never a duplicate. Failures back off
 * exponentially with jitter, honouring Retry-After.
 *
 * Handlers run on the loop's thread, one at a time; they must not block for long and must
 * not modify the objects they are given (the cache shares them). */
#ifndef MOAT_INFORMER_H
#define MOAT_INFORMER_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "kube.h"

typedef struct kube_loop kube_loop;
typedef struct kube_informer kube_informer;

/* A loop for the informers of one client (borrowed; must outlive the loop). */
int kube_loop_new(kube_loop **out, kube_client *client, moat_error *err);

/* Starts the loop's thread. Informers may be added before or after. */
int kube_loop_start(kube_loop *l, moat_error *err);

/* Ends every watch and joins the thread; informers keep their caches for reading. */
void kube_loop_stop(kube_loop *l);

/* Stops the loop if needed and frees it with all its informers. Accepts NULL. */
void kube_loop_free(kube_loop *l);

typedef struct {
    void (*on_add)(void *user, json_t *obj);
    void (*on_update)(void *user, json_t *old_obj, json_t *new_obj);
    /* The final state: the DELETED event's object, or after a relist the last state the
     * cache knew. */
    void (*on_delete)(void *user, json_t *obj);
    void *user;
} kube_informer_handlers;

typedef struct {
    const kube_resource *resource;
    const char *namespace; /* NULL: all namespaces */
    const char *label_selector;
    const char *field_selector;
    long page_size;      /* list page size; default 500 */
    int watch_timeout_s; /* server-side timeoutSeconds; default 300..599 (random) */
    int stall_timeout_s; /* a watch silent this long is dead; default 150 */
    int64_t backoff_base_ns, backoff_cap_ns; /* default 100 ms, 30 s */
    /* Label keys to index (NULL-terminated), for kube_informer_by_label. */
    const char *const *label_indexes;
    bool index_owners; /* index by metadata.ownerReferences[].uid */
    /* metadata.managedFields is a third of a typical object and controllers never read it:
     * the cache drops it unless this is set. */
    bool keep_managed_fields;
    /* Called on every object before it is cached (list items and watch events), to drop
     * what the caller never reads: the cache's memory is mostly jansson's per-value cost
     * (about ten times the compact JSON text). May modify obj in place; NULL: none. */
    void (*transform)(void *user, json_t *obj);
    void *transform_user;
    /* Keep each object as compact JSON text (about a tenth of the memory) and parse it on
     * every read: for caches of many objects read a few at a time. Reads then return
     * fresh copies. */
    bool compact_cache;
} kube_informer_options;

/* Adds an informer to the loop, which owns it from now on. handlers may be NULL. The
 * strings in opts are copied. */
int kube_informer_new(kube_informer **out, kube_loop *loop, const kube_informer_options *opts,
                      const kube_informer_handlers *handlers, moat_error *err);

/* True once the first list has filled the cache. */
bool kube_informer_has_synced(kube_informer *inf);

/* Waits until synced; returns 0, or -1 after timeout_ns. */
int kube_informer_wait_synced(kube_informer *inf, int64_t timeout_ns);

/* The cached object with that key ("ns/name", or "name"), or NULL. New reference: the
 * caller json_decref()s it and must not modify it (it may be shared with the cache). */
json_t *kube_informer_get(kube_informer *inf, const char *key);

/* Every cached object, as a new JSON array the caller owns (the objects are shared: read
 * only). */
json_t *kube_informer_list(kube_informer *inf);

/* Objects whose label `label` (one of opts.label_indexes) equals value / whose owner has
 * that uid; a new array, as above. */
json_t *kube_informer_by_label(kube_informer *inf, const char *label, const char *value);
json_t *kube_informer_by_owner(kube_informer *inf, const char *owner_uid);

size_t kube_informer_size(kube_informer *inf);

typedef struct {
    uint64_t lists;          /* completed lists (the first one included) */
    uint64_t watches;        /* watch requests started */
    uint64_t watch_failures; /* watches that ended by an error, a cut or a stall */
    uint64_t events;         /* watch events applied (bookmarks excluded) */
    uint64_t handler_calls;  /* add + update + delete calls */
} kube_informer_stats;

void kube_informer_get_stats(kube_informer *inf, kube_informer_stats *out);

/* Applies watch-stream bytes (JSON lines) to the cache exactly as the informer's own watch
 * does, handlers included. For benchmarks and tests that replay a recorded stream; only on
 * an informer whose loop is not running. Returns 0, or -1 (err set) for a bad line or an
 * ERROR event, where the stream ends (410: KUBE_REASON_GONE; a replay does not relist). */
int kube_informer_apply_stream(kube_informer *inf, const char *data, size_t len, moat_error *err);

/* Applies one page of a list answer (a List object's JSON) exactly as the informer's own
 * (re)list does: pages accumulate until one without metadata.continue, then the cache
 * becomes the list, the handlers hearing exactly what changed (adds, updates of objects
 * whose resourceVersion moved, deletes of what the list lacks) and the resourceVersion the
 * first page's. For tests and benchmarks, on an informer whose loop is not running. 0, or
 * -1 (err set) when the page is not JSON. */
int kube_informer_apply_list_page(kube_informer *inf, const char *data, size_t len,
                                  moat_error *err);

#endif

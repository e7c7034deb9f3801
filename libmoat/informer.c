#include "informer.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "backoff.h"
#include "kobj.h"
#include "kube-internal.h"
#include "strbuf.h"
#include "log.h"
#include "macro.h"
#include "watch.h"

#define DEFAULT_PAGE_SIZE    500L
#define DEFAULT_STALL_S      150
#define DEFAULT_BACKOFF_BASE (100 * 1000000LL)
#define DEFAULT_BACKOFF_CAP  (30 * 1000000000LL)
#define LIST_TIMEOUT_MS      120000L
#define MAX_INFORMERS        256
#define MAX_LABEL_INDEXES    16
#define LOOP_IDLE_POLL_MS    1000

typedef enum { PHASE_LIST, PHASE_WATCH } phase;

struct kube_informer {
    kube_loop *loop;
    kube_resource resource;
    char *group, *version, *plural, *kind; /* owned copies behind `resource` */
    char *namespace, *label_selector, *field_selector;
    long page_size;
    int watch_timeout_s, stall_timeout_s;
    int64_t backoff_base_ns, backoff_cap_ns;
    char *label_indexes[MAX_LABEL_INDEXES];
    size_t n_label_indexes;
    bool index_owners;
    bool keep_managed_fields;
    void (*transform)(void *user, json_t *obj);
    void *transform_user;
    bool compact;
    kube_informer_handlers handlers;

    /* The cache, its indexes and the sync flag: read by any thread, written by the loop. */
    pthread_rwlock_t lock;
    json_t *cache;    /* key -> object */
    json_t *by_label; /* label key -> value -> {object key: true} */
    json_t *by_owner; /* owner uid -> {object key: true} */
    bool synced;
    pthread_mutex_t sync_lock;
    pthread_cond_t sync_cond;

    /* Loop-thread state. */
    phase phase;
    char *rv;   /* resume point of the watch; NULL: list first */
    CURL *easy; /* the request in flight, or NULL */
    struct curl_slist *headers;
    moat_strbuf body; /* a list page (or an error answer) being received */
    long http_status;
    int64_t retry_after_ns;
    kube_watch_decoder *decoder;
    moat_error stream_err; /* set when a watch line could not be used */
    bool relist;           /* an ERROR 410 arrived in the stream */
    json_t *listing;       /* objects of the list in progress: key -> object */
    char *list_rv, *cont;
    unsigned failures;
    int64_t next_ns; /* do not start a request before this (monotonic) */

    _Atomic uint64_t n_lists, n_watches, n_watch_failures, n_events, n_handler_calls;
};

struct kube_loop {
    kube_client *client;
    CURLM *multi;
    pthread_t thread;
    bool running;
    atomic_bool stop;
    pthread_mutex_t lock; /* guards informers[] and n_informers */
    kube_informer *informers[MAX_INFORMERS];
    size_t n_informers;
};

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

/* ---- the cache and its indexes (callers hold the write lock) -------------------------- */

static void index_set(json_t *index, const char *k1, const char *k2, const char *key, bool add)
{
    json_t *level = index;
    if (k2) {
        json_t *next = json_object_get(level, k1);
        if (!next) {
            if (!add)
                return;
            json_object_set_new(level, k1, next = json_object());
        }
        level = next;
        k1 = k2;
    }
    json_t *set = json_object_get(level, k1);
    if (add) {
        if (!set)
            json_object_set_new(level, k1, set = json_object());
        json_object_set_new(set, key, json_true());
    } else if (set) {
        json_object_del(set, key);
        if (json_object_size(set) == 0)
            json_object_del(level, k1);
    }
}

static void index_object(kube_informer *inf, const char *key, json_t *obj, bool add)
{
    if (!obj)
        return;
    for (size_t i = 0; i < inf->n_label_indexes; i++) {
        const char *v = kobj_label(obj, inf->label_indexes[i]);
        if (v)
            index_set(inf->by_label, inf->label_indexes[i], v, key, add);
    }
    if (inf->index_owners) {
        json_t *owners = kobj_get(obj, "metadata.ownerReferences"), *o;
        size_t i;
        json_array_foreach (owners, i, o) {
            const char *uid = kobj_str(o, "uid");
            if (uid)
                index_set(inf->by_owner, uid, NULL, key, add);
        }
    }
}

/* A cache entry is the object itself, or with compact_cache [resourceVersion, compact JSON
 * text]: a parsed jansson object takes about ten times the memory of its text. */
static json_t *entry_make(kube_informer *inf, json_t *obj)
{
    if (!inf->compact)
        return json_incref(obj);
    char *text = json_dumps(obj, JSON_COMPACT);
    const char *rv = kobj_resource_version(obj);
    json_t *e = text ? json_pack("[s, s]", rv ? rv : "", text) : NULL;
    free(text);
    return e;
}

/* The object of an entry: a new reference the caller owns, or NULL. */
static json_t *entry_object(kube_informer *inf, json_t *e)
{
    if (!e)
        return NULL;
    if (!inf->compact)
        return json_incref(e);
    return json_loads(json_string_value(json_array_get(e, 1)), 0, NULL);
}

static const char *entry_rv(kube_informer *inf, json_t *e)
{
    return inf->compact ? json_string_value(json_array_get(e, 0)) : kobj_resource_version(e);
}

/* Puts obj under key; returns the previous object (a reference the caller owns) or NULL. */
static json_t *cache_put(kube_informer *inf, const char *key, json_t *obj)
{
    json_t *entry = entry_make(inf, obj);
    pthread_rwlock_wrlock(&inf->lock);
    json_t *old = entry_object(inf, json_object_get(inf->cache, key));
    index_object(inf, key, old, false);
    if (entry)
        json_object_set_new(inf->cache, key, entry);
    else
        json_object_del(inf->cache, key); /* out of memory: better absent than stale */
    index_object(inf, key, obj, true);
    pthread_rwlock_unlock(&inf->lock);
    return old;
}

static json_t *cache_remove(kube_informer *inf, const char *key)
{
    pthread_rwlock_wrlock(&inf->lock);
    json_t *old = entry_object(inf, json_object_get(inf->cache, key));
    index_object(inf, key, old, false);
    json_object_del(inf->cache, key);
    pthread_rwlock_unlock(&inf->lock);
    return old;
}

static void call_add(kube_informer *inf, json_t *obj)
{
    atomic_fetch_add(&inf->n_handler_calls, 1);
    if (inf->handlers.on_add)
        inf->handlers.on_add(inf->handlers.user, obj);
}

static void call_update(kube_informer *inf, json_t *old, json_t *obj)
{
    atomic_fetch_add(&inf->n_handler_calls, 1);
    if (inf->handlers.on_update)
        inf->handlers.on_update(inf->handlers.user, old, obj);
}

static void call_delete(kube_informer *inf, json_t *obj)
{
    atomic_fetch_add(&inf->n_handler_calls, 1);
    if (inf->handlers.on_delete)
        inf->handlers.on_delete(inf->handlers.user, obj);
}

static void trim(kube_informer *inf, json_t *obj)
{
    if (!inf->keep_managed_fields)
        json_object_del(json_object_get(obj, "metadata"), "managedFields");
    if (inf->transform)
        inf->transform(inf->transform_user, obj);
}

/* An object as the server now has it: added, updated, or (same resourceVersion) nothing. */
static void apply_upsert(kube_informer *inf, const char *key, json_t *obj)
{
    pthread_rwlock_rdlock(&inf->lock);
    json_t *cur = json_object_get(inf->cache, key);
    const char *cur_rv = cur ? entry_rv(inf, cur) : NULL, *rv = kobj_resource_version(obj);
    bool same = cur && cur_rv && rv && strcmp(cur_rv, rv) == 0;
    pthread_rwlock_unlock(&inf->lock);
    if (same)
        return; /* already delivered: never twice */
    json_t *old = cache_put(inf, key, obj);
    if (old)
        call_update(inf, old, obj);
    else
        call_add(inf, obj);
    json_decref(old);
}

/* ---- list ---------------------------------------------------------------------------- */

static void set_synced(kube_informer *inf)
{
    pthread_mutex_lock(&inf->sync_lock);
    inf->synced = true;
    pthread_cond_broadcast(&inf->sync_cond);
    pthread_mutex_unlock(&inf->sync_lock);
}

/* The whole list arrived: hand out exactly what changed since the cache was last true. */
static void finish_list(kube_informer *inf)
{
    const char *key;
    json_t *obj, *tmp;
    void *iter;

    json_object_foreach (inf->listing, key, obj)
        apply_upsert(inf, key, obj);

    /* Deleted while we were not watching: in the cache, not in the list. */
    pthread_rwlock_rdlock(&inf->lock);
    json_t *gone = json_array();
    json_object_foreach_safe(inf->cache, iter, key, tmp)
    {
        if (!json_object_get(inf->listing, key))
            json_array_append_new(gone, json_string(key));
    }
    pthread_rwlock_unlock(&inf->lock);
    size_t i;
    json_array_foreach (gone, i, tmp) {
        json_t *old = cache_remove(inf, json_string_value(tmp));
        if (old)
            call_delete(inf, old);
        json_decref(old);
    }
    json_decref(gone);

    json_decref(inf->listing);
    inf->listing = NULL;
    free(inf->rv);
    inf->rv = TAKE_PTR(inf->list_rv);
    atomic_fetch_add(&inf->n_lists, 1);
    inf->phase = PHASE_WATCH;
    inf->failures = 0;
    set_synced(inf);
}

static int handle_list_page(kube_informer *inf, moat_error *err)
{
    json_error_t jerr;
    json_t *page = json_loadb(inf->body.buf ? inf->body.buf : "", inf->body.len, 0, &jerr);
    if (!page)
        return moat_error_set(err, MOAT_E_INVALID, "list %s: answer is not JSON: %s",
                              inf->resource.plural, jerr.text);
    json_t *items = json_object_get(page, "items"), *obj;
    size_t i;
    if (!inf->listing)
        inf->listing = json_object();
    json_array_foreach (items, i, obj) {
        _cleanup_free_ char *key = kobj_key(obj);
        trim(inf, obj);
        if (key)
            json_object_set(inf->listing, key, obj);
    }
    if (!inf->list_rv) {
        const char *rv = kobj_str(page, "metadata.resourceVersion");
        inf->list_rv = dup_or_null(rv);
    }
    const char *cont = kobj_str(page, "metadata.continue");
    free(inf->cont);
    inf->cont = cont && *cont ? strdup(cont) : NULL;
    json_decref(page);
    if (!inf->cont) {
        finish_list(inf);
        /* A list's pages are the informer's largest transient allocation: give the buffer
         * and the freed pages back rather than keep them resident until the next relist. */
        moat_strbuf_free(&inf->body);
        malloc_trim(0);
    }
    return 0;
}

/* ---- watch --------------------------------------------------------------------------- */

static int on_event(void *user, kube_event_type type, json_t *obj)
{
    kube_informer *inf = user;
    const char *rv = kobj_resource_version(obj);

    if (type == KUBE_EVENT_ERROR) {
        int64_t code = 0;
        kobj_int(obj, "code", &code);
        if (code == 410) {
            inf->relist = true;
        } else {
            const char *msg = kobj_str(obj, "message");
            moat_error_set(&inf->stream_err, MOAT_E_KUBE, "watch %s: ERROR event: %s",
                           inf->resource.plural, msg ? msg : "(no message)");
        }
        return -1; /* end this watch */
    }
    if (type != KUBE_EVENT_BOOKMARK) {
        _cleanup_free_ char *key = kobj_key(obj);
        if (!key) {
            moat_error_set(&inf->stream_err, MOAT_E_INVALID, "watch %s: event object has no name",
                           inf->resource.plural);
            return -1;
        }
        atomic_fetch_add(&inf->n_events, 1);
        trim(inf, obj);
        if (type == KUBE_EVENT_DELETED) {
            json_t *old = cache_remove(inf, key);
            if (old)
                call_delete(inf, obj);
            json_decref(old);
        } else {
            apply_upsert(inf, key, obj);
        }
    }
    if (rv && *rv) {
        free(inf->rv);
        inf->rv = strdup(rv);
    }
    return 0;
}

/* ---- requests on the multi handle ---------------------------------------------------- */

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *user)
{
    kube_informer *inf = user;
    size_t n = size * nmemb;
    if (inf->http_status == 0)
        curl_easy_getinfo(inf->easy, CURLINFO_RESPONSE_CODE, &inf->http_status);
    if (inf->phase == PHASE_WATCH && inf->http_status == 200) {
        if (inf->stream_err.message || inf->relist)
            return 0;
        int r = kube_watch_decoder_feed(inf->decoder, ptr, n, on_event, inf, &inf->stream_err);
        return r < 0 ? 0 : n; /* 0 aborts the transfer */
    }
    /* A list page, or an error answer to a watch: keep it whole, within the cap. */
    return moat_strbuf_append(&inf->body, ptr, n) < 0 ? 0 : n; /* 0 aborts the transfer */
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *user)
{
    kube_informer *inf = user;
    size_t n = size * nmemb;
    static const char name[] = "retry-after:";
    if (n > sizeof(name) && strncasecmp(ptr, name, sizeof(name) - 1) == 0) {
        long secs = strtol(ptr + sizeof(name) - 1, NULL, 10);
        if (secs >= 0 && secs < 3600)
            inf->retry_after_ns = (int64_t)secs * 1000000000LL;
    }
    return n;
}

static int append_query(char **q, const char *key, const char *value)
{
    if (!value)
        return 0;
    char *esc = curl_easy_escape(NULL, value, 0), *n = NULL;
    if (!esc)
        return -1;
    int r = asprintf(&n, "%s%s%s=%s", *q ? *q : "", *q ? "&" : "?", key, esc);
    curl_free(esc);
    if (r < 0)
        return -1;
    free(*q);
    *q = n;
    return 0;
}

static int start_request(kube_informer *inf, moat_error *err)
{
    _cleanup_free_ char *path = kube_resource_path(&inf->resource, inf->namespace, NULL);
    _cleanup_free_ char *q = NULL, *full = NULL;
    char num[32];
    if (!path)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (append_query(&q, "labelSelector", inf->label_selector) < 0 ||
        append_query(&q, "fieldSelector", inf->field_selector) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    if (inf->phase == PHASE_LIST) {
        snprintf(num, sizeof(num), "%ld", inf->page_size);
        if (append_query(&q, "limit", num) < 0 || append_query(&q, "continue", inf->cont) < 0)
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    } else {
        snprintf(num, sizeof(num), "%d", inf->watch_timeout_s);
        if (append_query(&q, "watch", "1") < 0 ||
            append_query(&q, "resourceVersion", inf->rv) < 0 ||
            append_query(&q, "allowWatchBookmarks", "true") < 0 ||
            append_query(&q, "timeoutSeconds", num) < 0)
            return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }
    if (asprintf(&full, "%s%s", path, q ? q : "") < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");

    CURL *h = curl_easy_init();
    if (!h)
        return moat_error_set(err, MOAT_E_NOMEM, "curl_easy_init failed");
    if (kube_client_setup_easy(inf->loop->client, h, full, &inf->headers, err) < 0) {
        curl_easy_cleanup(h);
        return -1;
    }
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, inf->headers);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, inf);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_HEADERDATA, inf);
    curl_easy_setopt(h, CURLOPT_PRIVATE, inf);
    if (inf->phase == PHASE_LIST) {
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, LIST_TIMEOUT_MS);
    } else {
        /* The stall detector: a watch that sends nothing, not even a bookmark, for this
         * long is dead even if its connection looks open. */
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)inf->stall_timeout_s);
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(inf->watch_timeout_s + 60) * 1000L);
        kube_watch_decoder_reset(inf->decoder);
        atomic_fetch_add(&inf->n_watches, 1);
    }
    inf->easy = h;
    moat_strbuf_reset(&inf->body);
    inf->http_status = 0;
    inf->retry_after_ns = -1;
    inf->relist = false;
    moat_error_clear(&inf->stream_err);
    curl_multi_add_handle(inf->loop->multi, h);
    return 0;
}

static void end_request(kube_informer *inf)
{
    if (!inf->easy)
        return;
    curl_multi_remove_handle(inf->loop->multi, inf->easy);
    curl_easy_cleanup(inf->easy);
    inf->easy = NULL;
    curl_slist_free_all(inf->headers);
    inf->headers = NULL;
}

static void back_off(kube_informer *inf)
{
    int64_t delay = moat_backoff_jittered(inf->backoff_base_ns, inf->backoff_cap_ns,
                                          inf->failures++, moat_random_unit());
    if (inf->retry_after_ns >= 0 && inf->retry_after_ns > delay)
        delay = inf->retry_after_ns;
    inf->next_ns = moat_mono_ns() + delay;
}

static void start_relist(kube_informer *inf)
{
    inf->phase = PHASE_LIST;
    json_decref(inf->listing);
    inf->listing = NULL;
    free(inf->list_rv);
    inf->list_rv = NULL;
    free(inf->cont);
    inf->cont = NULL;
}

static void request_done(kube_informer *inf, CURLcode cc)
{
    _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
    const char *what = inf->phase == PHASE_LIST ? "list" : "watch";
    if (inf->http_status == 0)
        curl_easy_getinfo(inf->easy, CURLINFO_RESPONSE_CODE, &inf->http_status);
    long status = inf->http_status;
    end_request(inf);

    if (status != 0 && status != 200) {
        kube_status_to_error(&err, status, inf->body.buf, inf->body.len, what);
        if (status == 410) {
            /* Too old: a watch relists; a list whose continue token expired starts over. */
            log_debug(inf->resource.plural, "%s: %s; listing again", what, err.message);
            start_relist(inf);
            inf->next_ns = 0;
            return;
        }
        log_debug(inf->resource.plural, "%s failed: %s", what, err.message);
        if (inf->phase == PHASE_WATCH)
            atomic_fetch_add(&inf->n_watch_failures, 1);
        back_off(inf);
        return;
    }

    if (inf->phase == PHASE_LIST) {
        if (cc != CURLE_OK || inf->body.truncated) {
            log_debug(inf->resource.plural, "list failed: %s", curl_easy_strerror(cc));
            start_relist(inf);
            back_off(inf);
            return;
        }
        if (handle_list_page(inf, &err) < 0) {
            log_debug(inf->resource.plural, "%s", err.message);
            start_relist(inf);
            back_off(inf);
            return;
        }
        inf->next_ns = 0;
        return;
    }

    /* A watch ended. */
    if (inf->relist) {
        log_debug(inf->resource.plural, "watch: resourceVersion expired; listing again");
        start_relist(inf);
        inf->next_ns = 0;
        return;
    }
    if (cc == CURLE_OK && !inf->stream_err.message &&
        kube_watch_decoder_pending(inf->decoder) == 0) {
        /* The server's timeout: resume at once from the last version seen. */
        inf->failures = 0;
        inf->next_ns = 0;
        return;
    }
    /* Dropped, stalled, cut mid-line or garbled: resume from the last complete event. */
    atomic_fetch_add(&inf->n_watch_failures, 1);
    log_debug(inf->resource.plural, "watch ended: %s",
              inf->stream_err.message ? inf->stream_err.message
              : cc != CURLE_OK        ? curl_easy_strerror(cc)
                                      : "cut mid-line");
    if (!inf->rv)
        start_relist(inf);
    back_off(inf);
}

/* ---- the loop ------------------------------------------------------------------------ */

static void *loop_main(void *arg)
{
    kube_loop *l = arg;
    while (!atomic_load(&l->stop)) {
        int64_t now = moat_mono_ns(), next = now + (int64_t)LOOP_IDLE_POLL_MS * 1000000LL;
        pthread_mutex_lock(&l->lock);
        size_t n = l->n_informers;
        pthread_mutex_unlock(&l->lock);
        for (size_t i = 0; i < n; i++) {
            kube_informer *inf = l->informers[i];
            if (inf->easy)
                continue;
            if (inf->next_ns <= now) {
                _cleanup_error_ moat_error err = MOAT_ERROR_INIT;
                if (start_request(inf, &err) < 0) {
                    log_debug(inf->resource.plural, "cannot start request: %s", err.message);
                    back_off(inf);
                }
            }
            if (!inf->easy && inf->next_ns < next)
                next = inf->next_ns;
        }

        int running = 0;
        curl_multi_perform(l->multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(l->multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            kube_informer *inf = NULL;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&inf);
            if (inf)
                request_done(inf, msg->data.result);
        }
        int64_t wait_ms = (next - moat_mono_ns()) / 1000000LL;
        if (wait_ms < 0)
            wait_ms = 0;
        if (wait_ms > LOOP_IDLE_POLL_MS)
            wait_ms = LOOP_IDLE_POLL_MS;
        curl_multi_poll(l->multi, NULL, 0, (int)wait_ms, NULL);
    }
    for (size_t i = 0; i < l->n_informers; i++)
        end_request(l->informers[i]);
    return NULL;
}

int kube_loop_new(kube_loop **out, kube_client *client, moat_error *err)
{
    kube_loop *l = calloc(1, sizeof(*l));
    if (!l)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    l->client = client;
    l->multi = curl_multi_init();
    if (!l->multi) {
        free(l);
        return moat_error_set(err, MOAT_E_NOMEM, "curl_multi_init failed");
    }
    pthread_mutex_init(&l->lock, NULL);
    *out = l;
    return 0;
}

int kube_loop_start(kube_loop *l, moat_error *err)
{
    if (l->running)
        return 0;
    atomic_store(&l->stop, false);
    int r = pthread_create(&l->thread, NULL, loop_main, l);
    if (r != 0)
        return moat_error_set_errno(err, r, "starting the informer loop");
    l->running = true;
    return 0;
}

void kube_loop_stop(kube_loop *l)
{
    if (!l || !l->running)
        return;
    atomic_store(&l->stop, true);
    curl_multi_wakeup(l->multi);
    pthread_join(l->thread, NULL);
    l->running = false;
}

static void informer_free(kube_informer *inf)
{
    if (!inf)
        return;
    end_request(inf);
    json_decref(inf->cache);
    json_decref(inf->by_label);
    json_decref(inf->by_owner);
    json_decref(inf->listing);
    kube_watch_decoder_free(inf->decoder);
    moat_error_clear(&inf->stream_err);
    for (size_t i = 0; i < inf->n_label_indexes; i++)
        free(inf->label_indexes[i]);
    free(inf->group);
    free(inf->version);
    free(inf->plural);
    free(inf->kind);
    free(inf->namespace);
    free(inf->label_selector);
    free(inf->field_selector);
    free(inf->rv);
    free(inf->list_rv);
    free(inf->cont);
    moat_strbuf_free(&inf->body);
    pthread_rwlock_destroy(&inf->lock);
    pthread_mutex_destroy(&inf->sync_lock);
    pthread_cond_destroy(&inf->sync_cond);
    free(inf);
}

void kube_loop_free(kube_loop *l)
{
    if (!l)
        return;
    kube_loop_stop(l);
    for (size_t i = 0; i < l->n_informers; i++)
        informer_free(l->informers[i]);
    curl_multi_cleanup(l->multi);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

int kube_informer_new(kube_informer **out, kube_loop *loop, const kube_informer_options *opts,
                      const kube_informer_handlers *handlers, moat_error *err)
{
    if (!opts || !opts->resource)
        return moat_error_set(err, MOAT_E_INVALID, "informer: no resource");
    kube_informer *inf = calloc(1, sizeof(*inf));
    if (inf)
        inf->body.max = KUBE_MAX_RESPONSE_BYTES;
    if (!inf)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    inf->loop = loop;
    inf->group = strdup(opts->resource->group ? opts->resource->group : "");
    inf->version = strdup(opts->resource->version);
    inf->plural = strdup(opts->resource->plural);
    inf->kind = dup_or_null(opts->resource->kind);
    inf->resource = (kube_resource){inf->group, inf->version, inf->plural, inf->kind,
                                    opts->resource->namespaced};
    inf->namespace = dup_or_null(opts->namespace);
    inf->label_selector = dup_or_null(opts->label_selector);
    inf->field_selector = dup_or_null(opts->field_selector);
    inf->page_size = opts->page_size > 0 ? opts->page_size : DEFAULT_PAGE_SIZE;
    /* Spread the watches' renewals like client-go does: 5 to 10 minutes. */
    inf->watch_timeout_s =
        opts->watch_timeout_s > 0 ? opts->watch_timeout_s : 300 + (int)(moat_random_unit() * 300);
    inf->stall_timeout_s = opts->stall_timeout_s > 0 ? opts->stall_timeout_s : DEFAULT_STALL_S;
    inf->backoff_base_ns = opts->backoff_base_ns > 0 ? opts->backoff_base_ns : DEFAULT_BACKOFF_BASE;
    inf->backoff_cap_ns = opts->backoff_cap_ns > 0 ? opts->backoff_cap_ns : DEFAULT_BACKOFF_CAP;
    for (size_t i = 0; opts->label_indexes && opts->label_indexes[i]; i++) {
        if (i == MAX_LABEL_INDEXES) {
            informer_free(inf);
            return moat_error_set(err, MOAT_E_RANGE, "informer: more than %d label indexes",
                                  MAX_LABEL_INDEXES);
        }
        inf->label_indexes[inf->n_label_indexes++] = strdup(opts->label_indexes[i]);
    }
    inf->index_owners = opts->index_owners;
    inf->keep_managed_fields = opts->keep_managed_fields;
    inf->transform = opts->transform;
    inf->compact = opts->compact_cache;
    inf->transform_user = opts->transform_user;
    if (handlers)
        inf->handlers = *handlers;
    inf->cache = json_object();
    inf->by_label = json_object();
    inf->by_owner = json_object();
    pthread_rwlock_init(&inf->lock, NULL);
    pthread_mutex_init(&inf->sync_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&inf->sync_cond, &ca);
    pthread_condattr_destroy(&ca);
    inf->phase = PHASE_LIST;
    if (!inf->group || !inf->version || !inf->plural || !inf->cache || !inf->by_label ||
        !inf->by_owner || kube_watch_decoder_new(&inf->decoder, 0, err) < 0) {
        informer_free(inf);
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    }

    pthread_mutex_lock(&loop->lock);
    if (loop->n_informers == MAX_INFORMERS) {
        pthread_mutex_unlock(&loop->lock);
        informer_free(inf);
        return moat_error_set(err, MOAT_E_RANGE, "more than %d informers", MAX_INFORMERS);
    }
    loop->informers[loop->n_informers++] = inf;
    pthread_mutex_unlock(&loop->lock);
    curl_multi_wakeup(loop->multi);
    *out = inf;
    return 0;
}

bool kube_informer_has_synced(kube_informer *inf)
{
    pthread_mutex_lock(&inf->sync_lock);
    bool s = inf->synced;
    pthread_mutex_unlock(&inf->sync_lock);
    return s;
}

int kube_informer_wait_synced(kube_informer *inf, int64_t timeout_ns)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    int64_t t = (int64_t)deadline.tv_nsec + timeout_ns % 1000000000LL;
    deadline.tv_sec += timeout_ns / 1000000000LL + t / 1000000000LL;
    deadline.tv_nsec = t % 1000000000LL;
    pthread_mutex_lock(&inf->sync_lock);
    while (!inf->synced)
        if (pthread_cond_timedwait(&inf->sync_cond, &inf->sync_lock, &deadline) != 0)
            break;
    bool s = inf->synced;
    pthread_mutex_unlock(&inf->sync_lock);
    return s ? 0 : -1;
}

json_t *kube_informer_get(kube_informer *inf, const char *key)
{
    pthread_rwlock_rdlock(&inf->lock);
    json_t *obj = entry_object(inf, json_object_get(inf->cache, key));
    pthread_rwlock_unlock(&inf->lock);
    return obj;
}

json_t *kube_informer_list(kube_informer *inf)
{
    json_t *arr = json_array(), *obj;
    const char *key;
    pthread_rwlock_rdlock(&inf->lock);
    json_object_foreach (inf->cache, key, obj)
        json_array_append_new(arr, entry_object(inf, obj));
    pthread_rwlock_unlock(&inf->lock);
    return arr;
}

static json_t *objects_of(kube_informer *inf, json_t *set)
{
    json_t *arr = json_array(), *v;
    const char *key;
    json_object_foreach (set, key, v) {
        json_t *obj = entry_object(inf, json_object_get(inf->cache, key));
        if (obj)
            json_array_append_new(arr, obj);
    }
    return arr;
}

json_t *kube_informer_by_label(kube_informer *inf, const char *label, const char *value)
{
    pthread_rwlock_rdlock(&inf->lock);
    json_t *arr = objects_of(inf, json_object_get(json_object_get(inf->by_label, label), value));
    pthread_rwlock_unlock(&inf->lock);
    return arr;
}

json_t *kube_informer_by_owner(kube_informer *inf, const char *owner_uid)
{
    pthread_rwlock_rdlock(&inf->lock);
    json_t *arr = objects_of(inf, json_object_get(inf->by_owner, owner_uid));
    pthread_rwlock_unlock(&inf->lock);
    return arr;
}

size_t kube_informer_size(kube_informer *inf)
{
    pthread_rwlock_rdlock(&inf->lock);
    size_t n = json_object_size(inf->cache);
    pthread_rwlock_unlock(&inf->lock);
    return n;
}

void kube_informer_get_stats(kube_informer *inf, kube_informer_stats *out)
{
    out->lists = atomic_load(&inf->n_lists);
    out->watches = atomic_load(&inf->n_watches);
    out->watch_failures = atomic_load(&inf->n_watch_failures);
    out->events = atomic_load(&inf->n_events);
    out->handler_calls = atomic_load(&inf->n_handler_calls);
}

int kube_informer_apply_list_page(kube_informer *inf, const char *data, size_t len, moat_error *err)
{
    moat_strbuf_reset(&inf->body);
    if (moat_strbuf_append(&inf->body, data, len) < 0)
        return moat_error_set(err, MOAT_E_NOMEM, "list %s: page of %zu bytes not kept",
                              inf->resource.plural, len);
    return handle_list_page(inf, err);
}

int kube_informer_apply_stream(kube_informer *inf, const char *data, size_t len, moat_error *err)
{
    moat_error_clear(&inf->stream_err);
    inf->relist = false;
    int r = kube_watch_decoder_feed(inf->decoder, data, len, on_event, inf, err);
    if (r < 0 && inf->stream_err.message) {
        moat_error_set(err, inf->stream_err.code, "%s", inf->stream_err.message);
        moat_error_clear(&inf->stream_err);
    } else if (r < 0 && inf->relist) {
        /* An ERROR 410 event ends the stream like a bad line: the caller must hear why. */
        inf->relist = false;
        moat_error_set(err, MOAT_E_KUBE, "watch %s: ERROR event: resourceVersion expired",
                       inf->resource.plural);
        if (err) {
            err->kube_reason = KUBE_REASON_GONE;
            err->http_status = 410;
        }
    }
    return r < 0 ? -1 : 0;
}

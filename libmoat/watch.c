#include "watch.h"

#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "strbuf.h"

struct kube_watch_decoder {
    moat_strbuf line; /* the incomplete line so far */
    size_t max_line;
};

const char *kube_event_type_name(kube_event_type t)
{
    static const char *const names[] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"};
    return (size_t)t < ELEMENTSOF(names) ? names[t] : "?";
}

int kube_watch_decoder_new(kube_watch_decoder **out, size_t max_line, moat_error *err)
{
    kube_watch_decoder *d = calloc(1, sizeof(*d));
    if (!d)
        return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
    d->max_line = max_line ? max_line : KUBE_WATCH_MAX_LINE;
    d->line.max = d->max_line + 1;
    *out = d;
    return 0;
}

void kube_watch_decoder_reset(kube_watch_decoder *d)
{
    moat_strbuf_reset(&d->line);
}

void kube_watch_decoder_free(kube_watch_decoder *d)
{
    if (!d)
        return;
    moat_strbuf_free(&d->line);
    free(d);
}

size_t kube_watch_decoder_pending(const kube_watch_decoder *d)
{
    return d->line.len;
}

static int parse_type(const char *s, kube_event_type *out)
{
    for (int t = KUBE_EVENT_ADDED; t <= KUBE_EVENT_ERROR; t++)
        if (strcmp(s, kube_event_type_name(t)) == 0) {
            *out = t;
            return 0;
        }
    return -1;
}

static int emit_line(const char *line, size_t len, kube_watch_event_cb cb, void *user,
                     moat_error *err)
{
    /* Blank lines (keep-alives some proxies add) carry nothing. */
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
        len--;
    if (len == 0)
        return 0;
    json_error_t jerr;
    json_t *ev = json_loadb(line, len, 0, &jerr);
    if (!ev)
        return moat_error_set(err, MOAT_E_INVALID, "watch event is not JSON: %s at byte %d",
                              jerr.text, jerr.position);
    const char *type = json_string_value(json_object_get(ev, "type"));
    json_t *object = json_object_get(ev, "object");
    kube_event_type t;
    int r;
    if (!type || parse_type(type, &t) < 0)
        r = moat_error_set(err, MOAT_E_INVALID, "watch event has an unknown type \"%.32s\"",
                           type ? type : "(none)");
    else if (!json_is_object(object))
        r = moat_error_set(err, MOAT_E_INVALID, "watch event %s has no object", type);
    else
        r = cb(user, t, object);
    json_decref(ev);
    return r;
}

int kube_watch_decoder_feed(kube_watch_decoder *d, const char *data, size_t len,
                            kube_watch_event_cb cb, void *user, moat_error *err)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        if (d->line.len + take > d->max_line)
            return moat_error_set(err, MOAT_E_RANGE, "watch event line longer than %zu bytes",
                                  d->max_line);
        if (nl && d->line.len == 0) {
            /* The common case: a whole line in the input, no copy. */
            int r = emit_line(data, take, cb, user, err);
            if (r < 0)
                return r;
        } else {
            if (moat_strbuf_append(&d->line, data, take) < 0)
                return moat_error_set(err, MOAT_E_NOMEM, "out of memory");
            if (nl) {
                int r = emit_line(d->line.buf, d->line.len, cb, user, err);
                moat_strbuf_reset(&d->line);
                if (r < 0)
                    return r;
            }
        }
        if (!nl)
            break;
        data = nl + 1;
        len -= take + 1;
    }
    return 0;
}

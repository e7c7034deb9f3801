#include "channel.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libmoat/kobj.h"

void channel_demux_init(channel_demux *d)
{
    *d = (channel_demux){.status = {.max = CHANNEL_STATUS_MAX}};
}

void channel_demux_clear(channel_demux *d)
{
    moat_strbuf_free(&d->status);
    d->in_message = false;
    d->has_status = false;
}

int channel_demux_feed(channel_demux *d, const unsigned char *data, size_t len, bool last,
                       channel_output_cb out, void *user, moat_error *err)
{
    if (!d->in_message) {
        if (len == 0)
            return 0; /* an empty piece: the channel byte is still to come */
        d->channel = data[0];
        d->in_message = true;
        data++;
        len--;
    }
    if (last)
        d->in_message = false;
    if (len == 0)
        return 0;
    switch (d->channel) {
    case CHANNEL_STDOUT:
    case CHANNEL_STDERR:
        return out(user, d->channel, data, len, err);
    case CHANNEL_STATUS:
        d->has_status = true;
        if (moat_strbuf_append(&d->status, data, len) < 0)
            return moat_error_set(err, MOAT_E_INVALID,
                                  "exec: the command's Status is over %d bytes",
                                  CHANNEL_STATUS_MAX);
        return 0;
    default:
        return 0;
    }
}

int channel_status_exit_code(const char *json, size_t len, int *ret_code, moat_error *err)
{
    json_error_t jerr;
    json_t *st = json_loadb(json, len, 0, &jerr);
    int r = -1;
    if (!st || !json_is_object(st)) {
        moat_error_set(err, MOAT_E_INVALID, "exec: the command's Status is not JSON: %s",
                       st ? "not an object" : jerr.text);
        goto out;
    }
    const char *status = kobj_str(st, "status");
    if (status && strcmp(status, "Success") == 0) {
        *ret_code = 0;
        r = 0;
        goto out;
    }
    const char *reason = kobj_str(st, "reason");
    const json_t *causes = kobj_get(st, "details.causes");
    if (reason && strcmp(reason, "NonZeroExitCode") == 0 && json_is_array(causes)) {
        size_t i;
        const json_t *cause;
        json_array_foreach (causes, i, cause) {
            const char *cr = kobj_str(cause, "reason"), *msg = kobj_str(cause, "message");
            char *end;
            if (!cr || strcmp(cr, "ExitCode") != 0 || !msg || !*msg)
                continue;
            long code = strtol(msg, &end, 10);
            if (*end || code < 0 || code > 255)
                break;
            *ret_code = (int)code;
            r = 0;
            goto out;
        }
    }
    const char *message = kobj_str(st, "message");
    moat_error_set(err, MOAT_E_KUBE, "exec: %s", message && *message ? message : "failed");
out:
    json_decref(st);
    return r;
}

size_t channel_resize_message(char *buf, size_t size, unsigned cols, unsigned rows)
{
    int n = snprintf(buf, size, "{\"Width\":%u,\"Height\":%u}", cols, rows);
    return n < 0 || (size_t)n >= size ? 0 : (size_t)n;
}

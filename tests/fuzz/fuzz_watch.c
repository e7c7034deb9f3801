/* libFuzzer target: the watch-stream decoder. The first byte picks how the rest is split
 * into feeds (streams arrive in arbitrary pieces); the cap is small so the over-long path
 * is reached. Any input must give events or an error, never a crash or a read past a line. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "libmoat/kobj.h"
#include "libmoat/watch.h"

static int on_event(void *user, kube_event_type type, json_t *object)
{
    size_t *n = user;
    (*n)++;
    /* touch the object the way the informer does */
    (void)kobj_resource_version(object);
    (void)kobj_name(object);
    return type == KUBE_EVENT_ERROR ? -2 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)data[0] % 64 + 1, events = 0;
    kube_watch_decoder *d = NULL;
    moat_error err = MOAT_ERROR_INIT;
    if (kube_watch_decoder_new(&d, 4096, &err) < 0)
        abort();
    const char *p = (const char *)data + 1;
    size_t left = size - 1;
    while (left > 0) {
        size_t n = left < chunk ? left : chunk;
        int r = kube_watch_decoder_feed(d, p, n, on_event, &events, &err);
        if (r == -1 && !err.message)
            abort(); /* a decoder error must say why */
        if (r < 0) {
            moat_error_clear(&err);
            kube_watch_decoder_reset(d);
        }
        p += n;
        left -= n;
    }
    if (kube_watch_decoder_pending(d) > 4096)
        abort();
    kube_watch_decoder_free(d);
    return 0;
}

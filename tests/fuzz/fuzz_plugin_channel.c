/* libFuzzer target: what kubectl-moat reads of an exec stream from the server (any bytes,
 * cut into messages and pieces anywhere): the v5 channel demux, then the Status it gathered.
 * Output must be exactly the bytes of the stdout and stderr messages, in order. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kubectl-moat/channel.h"

typedef struct {
    size_t out; /* bytes handed to the output */
} sink;

static int on_output(void *user, int channel, const unsigned char *data, size_t len,
                     moat_error *err)
{
    sink *s = user;
    if ((channel != CHANNEL_STDOUT && channel != CHANNEL_STDERR) || len == 0 || !data)
        abort();
    s->out += len;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    channel_demux d;
    sink s = {0};
    moat_error err = MOAT_ERROR_INIT;
    channel_demux_init(&d);
    /* 0xFE ends a message, 0xFD a piece of one; every other byte is stream */
    size_t start = 0, expect = 0;
    bool message_start = true;
    int channel = -1;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && data[i] != 0xFE && data[i] != 0xFD)
            continue;
        bool last = i == size || data[i] == 0xFE;
        const unsigned char *piece = data + start;
        size_t len = i - start;
        if (message_start && len)
            channel = piece[0];
        size_t payload = message_start && len ? len - 1 : len;
        if (channel == CHANNEL_STDOUT || channel == CHANNEL_STDERR)
            expect += payload;
        if (channel_demux_feed(&d, piece, len, last, on_output, &s, &err) < 0) {
            if (err.code != MOAT_E_INVALID || !err.message)
                abort();
            moat_error_clear(&err);
            break;
        }
        if (len)
            message_start = false;
        if (last)
            message_start = true;
        start = i + 1;
    }
    if (s.out != expect && !err.code)
        abort();
    if (d.has_status) {
        int code = -1;
        if (channel_status_exit_code(d.status.buf ? d.status.buf : "", d.status.len, &code, &err) ==
            0) {
            if (code < 0 || code > 255)
                abort();
        } else if (!err.message) {
            abort();
        }
        moat_error_clear(&err);
    }
    channel_demux_clear(&d);
    return 0;
}

/* The v5.channel.k8s.io stream protocol of pods/exec, without the socket (wsexec.c owns it).
 *
 * Every WebSocket message is one byte of channel and then data: 0 stdin, 1 stdout, 2 stderr,
 * 3 the Status of the command (JSON, sent once before the server closes), 4 a terminal's new
 * size, and 255 "close": its one data byte names the channel the client will not write again
 * (v5's addition: stdin can end while the command runs). A message may arrive in pieces;
 * only its first piece carries the channel. */
#ifndef MOAT_PLUGIN_CHANNEL_H
#define MOAT_PLUGIN_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>

#include "libmoat/error.h"
#include "libmoat/strbuf.h"

#define CHANNEL_PROTOCOL "v5.channel.k8s.io"

enum {
    CHANNEL_STDIN = 0,
    CHANNEL_STDOUT = 1,
    CHANNEL_STDERR = 2,
    CHANNEL_STATUS = 3,
    CHANNEL_RESIZE = 4,
    CHANNEL_CLOSE = 255,
};

/* The Status is small; more than this is not one. */
#define CHANNEL_STATUS_MAX (64 * 1024)

/* Where a stream's output goes: called for each piece of stdout or stderr, in order. < 0
 * stops the stream (its error set by the callee). */
typedef int (*channel_output_cb)(void *user, int channel, const unsigned char *data, size_t len,
                                 moat_error *err);

typedef struct {
    bool in_message;    /* a message's first piece was seen and its last not yet */
    int channel;        /* of the message in progress */
    moat_strbuf status; /* channel 3, gathered; capped at CHANNEL_STATUS_MAX */
    bool has_status;
} channel_demux;

/* Ready to use when zeroed; channel_demux_init sets the status cap. */
void channel_demux_init(channel_demux *d);
void channel_demux_clear(channel_demux *d);

/* Takes one piece of a message (`last`: the message ends with it). stdout and stderr go to
 * out; the Status is kept; stdin, resize, close and unknown channels from the server are
 * ignored. -1 when out fails, or with MOAT_E_INVALID for a Status over its cap. */
int channel_demux_feed(channel_demux *d, const unsigned char *data, size_t len, bool last,
                       channel_output_cb out, void *user, moat_error *err);

/* The command's exit code from the Status it sent: "Success" is 0; a "NonZeroExitCode"
 * failure gives the code of its ExitCode cause. Any other Status (the command could not
 * start, the container is gone) is -1 with MOAT_E_KUBE and the Status's message. */
int channel_status_exit_code(const char *json, size_t len, int *ret_code, moat_error *err);

/* A channel-4 message body for a terminal of cols x rows: {"Width":..,"Height":..}.
 * Returns its length (< size). */
size_t channel_resize_message(char *buf, size_t size, unsigned cols, unsigned rows);

#endif

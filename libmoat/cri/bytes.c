#include "bytes.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <stdlib.h>
#include <string.h>

uint8_t *cri_bytes_from_buffer(struct grpc_byte_buffer *bb, size_t *ret_len)
{
    grpc_byte_buffer_reader reader;
    if (!bb || !grpc_byte_buffer_reader_init(&reader, bb))
        return NULL;
    grpc_slice all = grpc_byte_buffer_reader_readall(&reader);
    grpc_byte_buffer_reader_destroy(&reader);
    size_t len = GRPC_SLICE_LENGTH(all);
    uint8_t *out = malloc(len ? len : 1);
    if (out) {
        memcpy(out, GRPC_SLICE_START_PTR(all), len);
        *ret_len = len;
    }
    grpc_slice_unref(all);
    return out;
}

struct grpc_byte_buffer *cri_bytes_to_buffer(const uint8_t *data, size_t len)
{
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)data, len);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

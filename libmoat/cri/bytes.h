/* gRPC message payloads as plain bytes, for the two modules that use the gRPC core API
 * (moat-cri's relay, the server; libmoat/cri/cri.c, the client): the one place a received
 * byte buffer is copied out and bytes are wrapped to be sent. */
#ifndef MOAT_CRI_BYTES_H
#define MOAT_CRI_BYTES_H

#include <stddef.h>
#include <stdint.h>

struct grpc_byte_buffer;

/* The payload of bb copied into one malloc'd block (the caller frees; at least one byte is
 * allocated, so an empty message is a non-NULL block with *ret_len 0). NULL when bb cannot
 * be read or memory runs out; *ret_len is written only on success. */
uint8_t *cri_bytes_from_buffer(struct grpc_byte_buffer *bb, size_t *ret_len);

/* A byte buffer holding a copy of data (the caller destroys it with
 * grpc_byte_buffer_destroy). */
struct grpc_byte_buffer *cri_bytes_to_buffer(const uint8_t *data, size_t len);

#endif
